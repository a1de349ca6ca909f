"""Unsubscribe (RFC 8058 one-click and the page's button): signed link -> unsubscribed and
suppressed at once. Idempotent: a second click changes nothing and answers the same."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from shared import topology
from shared.domain import links, tokens
from shared.domain.errors import NotFound
from shared.domain.events import stable_id
from shared.domain.messages import UNSUBSCRIBED, SubscriberEvent
from shared.domain.subscriber import ConsentRecord, Subscriber
from shared.repositories import suppressions as reasons
from shared.repositories.subscribers import Subscribers
from shared.repositories.suppressions import Suppressions
from shared.services.publishing import Outbox


class UnsubscribeService:
    def __init__(
        self,
        subscribers: Subscribers,
        suppressions: Suppressions,
        outbox: Outbox,
        signing_key: str,
        clock: Callable[[], float],
    ) -> None:
        self._subscribers = subscribers
        self._suppressions = suppressions
        self._outbox = outbox
        self._signing_key = signing_key
        self._clock = clock

    def subscriber_for(self, token: str) -> tuple[str, str | None]:
        """(subscriber id, campaign id) of a genuine link; InvalidToken otherwise."""
        payload = tokens.verify(self._signing_key, links.UNSUBSCRIBE, token)
        return str(payload["s"]), payload.get("c")

    def unsubscribe(self, token: str, source: str, ip: str = "") -> None:
        """Unsubscribe the link's subscriber now. InvalidToken for a forged link; a subscriber
        that no longer exists (erased) is already beyond mail, so that is success too."""
        subscriber_id, campaign_id = self.subscriber_for(token)
        try:
            self.unsubscribe_subscriber(subscriber_id, source, campaign_id, ip)
        except NotFound:
            return

    def unsubscribe_subscriber(
        self, subscriber_id: str, source: str, campaign_id: str | None = None, ip: str = ""
    ) -> Subscriber:
        now = self._clock()
        consent = ConsentRecord("unsubscribe", now, source, ip)
        subscriber = self._subscribers.change(subscriber_id, lambda s: s.unsubscribe(now, consent))
        self._suppressions.add(subscriber.email, reasons.UNSUBSCRIBED, now, source)
        event = SubscriberEvent(
            stable_id(UNSUBSCRIBED, subscriber.id, subscriber.unsubscribed_at),
            UNSUBSCRIBED,
            subscriber.id,
            subscriber.unsubscribed_at or now,
            {"source": source, "campaign_id": campaign_id},
        )
        self._outbox.publish_json(topology.SUBSCRIBER_EVENTS, [asdict(event)])
        return subscriber
