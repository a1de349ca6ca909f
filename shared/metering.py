"""Counts the billable operations a run performs, so cost is priced from counts, not guesses.

Adapters call `count("firestore.read", n)`; the benchmark prices the totals with the list
prices in shared/pricing.py. With `detail` (a collection, a topic and direction, a table) the
same operation is also tallied under `name@detail`, so the bench can say where a component's
cost comes from; prices apply to the plain names only. Counting is cheap and thread-safe;
`NULL_METER` counts nothing.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass

DETAIL = "@"  # between an operation's name and its detail: "firestore.write@send_ledger"


@dataclass
class Tally:
    operations: int = 0
    bytes: int = 0
    seconds: float = 0.0  # CPU seconds, for function invocations


class OperationMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[str, Tally] = defaultdict(Tally)

    def count(
        self, name: str, n: int = 1, nbytes: int = 0, seconds: float = 0.0, detail: str = ""
    ) -> None:
        with self._lock:
            for key in (name, f"{name}{DETAIL}{detail}") if detail else (name,):
                tally = self._tallies[key]
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
    def count(
        self, name: str, n: int = 1, nbytes: int = 0, seconds: float = 0.0, detail: str = ""
    ) -> None:
        return None


NULL_METER: OperationMeter = _NullMeter()
