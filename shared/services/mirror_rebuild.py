"""Rebuild the subscriber mirror (`subscribers_raw`) from the document store: for a deployment
that ran before the mirror existed, or after the mirror was lost. Reads every subscriber document
once (page by page, so memory stays flat) and appends one change row each, stamped now, so it
becomes each subscriber's latest state; changes the pipeline mirrors meanwhile are newer still.
Running it again is harmless (another row per subscriber, the same state)."""

from __future__ import annotations

from collections.abc import Callable

from shared.ports import Warehouse
from shared.repositories.subscribers import Subscribers

PAGE_SIZE = 500  # one document query and one warehouse request per page


class MirrorRebuild:
    def __init__(self, subscribers: Subscribers, warehouse: Warehouse) -> None:
        self._subscribers = subscribers
        self._warehouse = warehouse

    def run(self, progress: Callable[[int], None] = lambda done: None) -> int:
        """Mirror every subscriber; `progress(done so far)` after each page. Returns how many."""
        done = 0
        for page in self._subscribers.pages(page_size=PAGE_SIZE):
            self._warehouse.append_subscribers(self._subscribers.mirror_rows(page))
            done += len(page)
            progress(done)
        return done
