"""Counts the billable operations a run performs, so cost is priced from counts, not guesses.

Adapters call `count("firestore.read", n)`; the benchmark prices the totals with the list
prices in shared/pricing.py. Counting is cheap and thread-safe; `NULL_METER` counts nothing.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass


@dataclass
class Tally:
    operations: int = 0
    bytes: int = 0
    seconds: float = 0.0  # CPU seconds, for function invocations


class OperationMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[str, Tally] = defaultdict(Tally)

    def count(self, name: str, n: int = 1, nbytes: int = 0, seconds: float = 0.0) -> None:
        with self._lock:
            tally = self._tallies[name]
            tally.operations += n
            tally.bytes += nbytes
            tally.seconds += seconds

    def snapshot(self) -> dict[str, Tally]:
        with self._lock:
            return {k: Tally(v.operations, v.bytes, v.seconds) for k, v in self._tallies.items()}

    def reset(self) -> None:
        with self._lock:
            self._tallies.clear()


class _NullMeter(OperationMeter):
    def count(self, name: str, n: int = 1, nbytes: int = 0, seconds: float = 0.0) -> None:
        return None


NULL_METER: OperationMeter = _NullMeter()
