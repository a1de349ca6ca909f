"""Feedback: the bounce and complaint policy, applied to normalized provider events.

A hard bounce suppresses the address; a complaint unsubscribes and suppresses at once; an
unsubscribe reported by the provider unsubscribes. Every event goes to the warehouse with an id
derived from the provider's event id, so a provider's retry is stored once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.domain import events as ev
from shared.domain import feedback as fb
from shared.domain.errors import NotFound
from shared.domain.events import AnalyticsEvent, mailbox_provider, stable_id, utc_iso
from shared.domain.feedback import FeedbackEvent
from shared.domain.subscriber import Subscriber
from shared.repositories import suppressions as reasons
from shared.repositories.subscribers import Subscribers
from shared.repositories.suppressions import Suppressions
from shared.services.publishing import Outbox
from shared.services.unsubscribe import UnsubscribeService

log = logging.getLogger(__name__)

_EVENT_TYPE = {
    fb.DELIVERED: ev.DELIVERED, fb.DEFERRED: ev.DEFERRED, fb.BOUNCE: ev.BOUNCE,
    fb.COMPLAINT: ev.COMPLAINT, fb.OPEN: ev.OPEN, fb.CLICK: ev.CLICK,
    fb.UNSUBSCRIBE: ev.UNSUBSCRIBE, fb.DROPPED: ev.DROPPED,
}  # fmt: skip


class FeedbackService:
    def __init__(
        self,
        subscribers: Subscribers,
        suppressions: Suppressions,
        unsubscribe: UnsubscribeService,
        outbox: Outbox,
        clock: Callable[[], float],
    ) -> None:
        self._subscribers = subscribers
        self._suppressions = suppressions
        self._unsubscribe = unsubscribe
        self._outbox = outbox
        self._clock = clock

    def handle(self, event: FeedbackEvent) -> None:
        subscriber_id = self._subscribers.id_for(event.email)
        if event.kind == fb.BOUNCE and event.bounce_type == fb.HARD:
            self._suppress(event, subscriber_id, reasons.HARD_BOUNCE)
        elif event.kind == fb.COMPLAINT:
            self._suppress(event, subscriber_id, reasons.COMPLAINT)
            self._unsubscribe_quietly(subscriber_id, f"{event.provider}-complaint")
        elif event.kind == fb.UNSUBSCRIBE:
            self._unsubscribe_quietly(subscriber_id, f"{event.provider}-unsubscribe")
        self._outbox.analytics([self._analytics(event, subscriber_id)])

    def _suppress(self, event: FeedbackEvent, subscriber_id: str, reason: str) -> None:
        self._suppressions.add(event.email, reason, self._clock(), event.provider)

        def mark(subscriber: Subscriber) -> bool:
            if subscriber.suppressed == reason:
                return False
            subscriber.suppressed = reason
            return True

        try:
            self._subscribers.change(subscriber_id, mark)
        except NotFound:
            log.info("feedback for an address with no subscriber; suppression recorded")

    def _unsubscribe_quietly(self, subscriber_id: str, source: str) -> None:
        try:
            self._unsubscribe.unsubscribe_subscriber(subscriber_id, source)
        except NotFound:
            pass

    def _analytics(self, event: FeedbackEvent, subscriber_id: str) -> AnalyticsEvent:
        return AnalyticsEvent(
            event_id=stable_id("feedback", event.provider, event.provider_event_id),
            event_type=_EVENT_TYPE[event.kind],
            occurred_at=utc_iso(event.occurred_at),
            subscriber_id=subscriber_id,
            campaign_id=event.campaign_id,
            provider=event.provider,
            mailbox_provider=mailbox_provider(event.email),
            message_id=event.message_id,
            link_url=event.url,
            reason=event.bounce_type or event.detail,
            properties={
                k: v
                for k, v in (("smtp_code", event.smtp_code), ("enhanced_code", event.enhanced_code))
                if v
            },
        )
