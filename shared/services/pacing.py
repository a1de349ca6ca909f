"""Pacing: dispatch publishes a campaign's render batches no faster than the email provider
sends them, so the backlog waits in the audience (read page by page, for nothing) rather than
in Pub/Sub, where every push a full send function refuses is billed again and counts towards
dead-lettering (README "Fan-out the platform can take": unpaced, a 10 M campaign at 1,000/s
dead-letters a tenth of its recipients in shared/bench/simulation.py; paced, none).

One dispatch invocation walks one phase page by page; after each page it waits until the
recipients it published fit the rate since it started. Campaigns dispatched at the same time
are paced each on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class PaceRun:
    """One invocation's pace: `after(n)` once n more recipients are published."""

    rate_per_s: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    started: float
    published: int = 0

    def after(self, recipients: int) -> float:
        """Wait until the recipients so far fit the rate; returns the seconds waited."""
        self.published += recipients
        if self.rate_per_s <= 0:
            return 0.0
        wait = self.started + self.published / self.rate_per_s - self.clock()
        if wait > 0:
            self.sleep(wait)
            return wait
        return 0.0


@dataclass(frozen=True)
class Pacer:
    """`rate_per_s` recipients per second (0: no pacing)."""

    rate_per_s: float = 0.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def start(self) -> PaceRun:
        return PaceRun(self.rate_per_s, self.clock, self.sleep, self.clock())
