"""Event intake (POST /events): validate what the customer's systems report, resolve each
subscriber, hand the events to the triggers (behaviour-events) and to the warehouse.

All or nothing: one invalid event rejects the request (InvalidEvents names each problem) and
nothing is published. The answer is the same whether or not a subscriber is known, so the API
cannot be used to learn who is on the list; an unknown subscriber's event is still warehoused,
with reason `unknown_subscriber`, and starts no trigger. Publishing is at-least-once: a client
that retries after a 503 posts the same idempotency keys, and every consumer deduplicates on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shared import topology
from shared.domain import events as ev
from shared.domain.behaviour import (
    BehaviourEvent,
    RawEvent,
    messages_for,
    parse_events,
    sized_chunks,
)
from shared.domain.events import AnalyticsEvent, utc_iso
from shared.repositories.subscribers import Subscribers
from shared.services.publishing import Outbox

UNKNOWN_SUBSCRIBER = "unknown_subscriber"
ANALYTICS_MESSAGE_BYTES = 300_000  # warehouse rows per Pub/Sub message, well under 512 KB


class EventIntake:
    def __init__(
        self, subscribers: Subscribers, outbox: Outbox, clock: Callable[[], float]
    ) -> None:
        self._subscribers = subscribers
        self._outbox = outbox
        self._clock = clock

    def accept(self, body: Any) -> int:
        """Take one event or {"events": [...]}; returns how many were accepted. Raises
        InvalidInput/InvalidEvents (400) and TransientError (503: post again)."""
        now = self._clock()
        events = [self._resolved(raw) for raw in parse_events(body, now)]
        known = set(self._subscribers.get_many(list({e.subscriber_id for e in events})))
        for_triggers = [e for e in events if e.subscriber_id in known]
        if for_triggers:
            self._outbox.publish_json(topology.BEHAVIOUR_EVENTS, messages_for(for_triggers))
        self._warehouse(events, known, now)
        return len(events)

    def _resolved(self, raw: RawEvent) -> BehaviourEvent:
        subscriber_id = raw.subscriber_id or self._subscribers.id_for(raw.email or "")
        return BehaviourEvent(
            subscriber_id, raw.name, raw.occurred_at, raw.idempotency_key, raw.properties
        )

    def _warehouse(self, events: Sequence[BehaviourEvent], known: set[str], now: float) -> None:
        rows = [_analytics(e, e.subscriber_id in known, now) for e in events]
        for chunk in sized_chunks(rows, ANALYTICS_MESSAGE_BYTES):
            self._outbox.analytics(chunk)


def _analytics(event: BehaviourEvent, known: bool, now: float) -> AnalyticsEvent:
    """The warehouse row: a `custom` event whose id comes from the idempotency key, so the
    same event posted twice is one row."""
    return AnalyticsEvent(
        event_id=event.event_id,
        event_type=ev.CUSTOM,
        occurred_at=utc_iso(event.occurred_at),
        received_at=utc_iso(now),
        subscriber_id=event.subscriber_id,
        reason=None if known else UNKNOWN_SUBSCRIBER,
        properties={
            "name": event.name,
            "properties": event.properties,
            "idempotency_key": event.idempotency_key,
        },
    )
