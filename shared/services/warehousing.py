"""Warehouse: analytics events from every stage -> the Warehouse port.

An unknown event type is a bug upstream: the batch fails (and so lands in the dead-letter queue
for an operator) rather than being dropped.
"""

from __future__ import annotations

from shared.domain.errors import PermanentFailure
from shared.domain.events import EVENT_TYPES, AnalyticsEvent
from shared.ports import Warehouse


class WarehouseService:
    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def handle(self, events: list[AnalyticsEvent]) -> int:
        unknown = sorted({e.event_type for e in events} - EVENT_TYPES)
        if unknown:
            raise PermanentFailure(f"unknown event types: {', '.join(unknown)}")
        self._warehouse.append([e.to_row() for e in events])
        return len(events)
