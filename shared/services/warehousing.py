"""Warehouse: analytics events from every stage -> the Warehouse port.

Subscriber changes (`subscriber_changed`, shared/domain/subscriber_mirror.py) go to the
subscriber mirror table instead of the events.

An unknown event type is a bug upstream: the batch fails (and so lands in the dead-letter queue
for an operator) rather than being dropped.

Each stored batch logs one line per event type with its count (`event_type`, `event_count`):
the log-based metric behind the bounce and complaint rate alerts reads them
(terraform/monitoring.tf), so the rates need no warehouse query.
"""

from __future__ import annotations

import logging
from collections import Counter

from shared.domain.errors import PermanentFailure
from shared.domain.events import EVENT_TYPES, SUBSCRIBER_CHANGED, AnalyticsEvent
from shared.domain.subscriber_mirror import row_of
from shared.ports import Warehouse

log = logging.getLogger("mailpipe.warehouse")


class WarehouseService:
    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def handle(self, events: list[AnalyticsEvent]) -> int:
        unknown = sorted({e.event_type for e in events} - EVENT_TYPES)
        if unknown:
            raise PermanentFailure(f"unknown event types: {', '.join(unknown)}")
        changes = [e for e in events if e.event_type == SUBSCRIBER_CHANGED]
        if changes:
            self._warehouse.append_subscribers([row_of(e) for e in changes])
        others = [e for e in events if e.event_type != SUBSCRIBER_CHANGED]
        if others:
            self._warehouse.append([e.to_row() for e in others])
        for event_type, count in sorted(Counter(e.event_type for e in events).items()):
            log.info("warehoused %d %s events", count, event_type,
                     extra={"event_type": event_type, "event_count": count})  # fmt: skip
        return len(events)
