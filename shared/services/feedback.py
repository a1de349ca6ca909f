"""Feedback: the bounce and complaint policy, applied to normalized provider events.

    hard bounce          -> suppress the address (reason hard_bounce)
    soft bounce          -> counted on the subscriber document; suppress once SoftBouncePolicy
                            says so (reason soft_bounces): no warehouse query per bounce
    complaint            -> suppress (reason complaint) and unsubscribe, at once
    unsubscribe (ESP)    -> unsubscribe (which suppresses, reason unsubscribed)
    open / click (ESP)   -> classified human or machine like our own tracking hits

Suppression is keyed by the address's keyed hash, so it holds for every provider and campaign;
the send stage checks it at send time. Every effect is idempotent (suppressing or unsubscribing
twice changes nothing; the soft-bounce count is over distinct messages), and the analytics event
id derives from (provider, provider event id), so a provider's retried delivery is applied and
stored once in effect.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from shared.domain import events as ev
from shared.domain import feedback as fb
from shared.domain.errors import NotFound
from shared.domain.events import AnalyticsEvent, mailbox_provider, stable_id, utc_iso
from shared.domain.feedback import FeedbackEvent, SoftBouncePolicy
from shared.domain.machine_detection import MachineDetector, Request
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


def analytics_event_id(event: FeedbackEvent) -> str:
    """The warehouse id of a provider event: the same for every delivery of it."""
    return stable_id("feedback", event.provider, event.provider_event_id)


class FeedbackService:
    def __init__(
        self,
        subscribers: Subscribers,
        suppressions: Suppressions,
        unsubscribe: UnsubscribeService,
        outbox: Outbox,
        clock: Callable[[], float],
        policy: SoftBouncePolicy | None = None,
        machines: MachineDetector | None = None,
    ) -> None:
        self._subscribers = subscribers
        self._suppressions = suppressions
        self._unsubscribe = unsubscribe
        self._outbox = outbox
        self._clock = clock
        self._policy = policy or SoftBouncePolicy()
        self._machines = machines or MachineDetector()

    def handle(self, event: FeedbackEvent) -> None:
        """Apply the policy, then record the event. Raises TransientError (retry) only."""
        subscriber_id = self._subscribers.id_for(event.email)
        if event.kind == fb.BOUNCE and event.bounce_type == fb.HARD:
            self._suppress(event, subscriber_id, reasons.HARD_BOUNCE)
        elif event.kind == fb.BOUNCE:
            self._judge_soft_bounce(event, subscriber_id)
        elif event.kind == fb.COMPLAINT:
            self._suppress(event, subscriber_id, reasons.COMPLAINT)
            self._unsubscribe_quietly(subscriber_id, f"{event.provider}-complaint")
        elif event.kind == fb.UNSUBSCRIBE:
            self._unsubscribe_quietly(subscriber_id, f"{event.provider}-unsubscribe")
        self._outbox.analytics([self._analytics(event, subscriber_id)])

    def _judge_soft_bounce(self, event: FeedbackEvent, subscriber_id: str) -> None:
        key = event.message_id or analytics_event_id(event)
        now = self._clock()

        def count(subscriber: Subscriber) -> bool:
            recent = self._policy.record(subscriber.soft_bounces, key, event.occurred_at, now)
            if recent == subscriber.soft_bounces:
                return False  # a bounce counted before (a provider's retry, a redelivery)
            subscriber.soft_bounces = recent
            return True

        try:
            subscriber = self._subscribers.change(subscriber_id, count)
        except NotFound:
            log.info("soft bounce for an address with no subscriber; nothing to count")
            return
        if self._policy.suppresses(subscriber.soft_bounces):
            log.info("soft bounce limit reached; suppressing", extra={"subscriber": subscriber_id})
            self._suppress(event, subscriber_id, reasons.SOFT_BOUNCES)

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
        with contextlib.suppress(NotFound):  # no subscriber: nobody to unsubscribe
            self._unsubscribe.unsubscribe_subscriber(subscriber_id, source)

    def _is_machine(self, event: FeedbackEvent) -> bool | None:
        if event.kind not in (fb.OPEN, fb.CLICK):
            return None
        if event.extra.get("provider_machine_open") or event.extra.get("provider_bot"):
            return True
        request = Request(user_agent=event.user_agent or "", ip=event.ip or "")
        return self._machines.classify(request).is_machine

    def _analytics(self, event: FeedbackEvent, subscriber_id: str) -> AnalyticsEvent:
        return AnalyticsEvent(
            event_id=analytics_event_id(event),
            event_type=_EVENT_TYPE[event.kind],
            occurred_at=utc_iso(event.occurred_at),
            subscriber_id=subscriber_id,
            campaign_id=event.campaign_id,
            provider=event.provider,
            mailbox_provider=mailbox_provider(event.email),
            message_id=event.message_id,
            link_url=event.url,
            is_machine=self._is_machine(event),
            reason=event.bounce_type or event.detail,
            properties={
                k: v
                for k, v in (("smtp_code", event.smtp_code), ("enhanced_code", event.enhanced_code))
                if v
            },
        )
