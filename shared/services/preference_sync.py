"""Preference sync: reacts to subscriber lifecycle events.

signed_up -> a confirmation token and the confirmation mail; confirmed -> the behaviour event
`subscriber.confirmed`, which starts the welcome series (triggers); every event -> the warehouse.
Retries are harmless: the token is derived from the event id and each mail's batch id from its
cause, so the send ledger sends it once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import asdict

from shared import topology
from shared.domain import events as ev
from shared.domain import messages as msg
from shared.domain import template_names
from shared.domain.behaviour import SUBSCRIBER_CONFIRMED, lifecycle_event, messages_for
from shared.domain.errors import NotFound
from shared.domain.events import AnalyticsEvent, mailbox_provider, stable_id, utc_iso
from shared.domain.links import Links
from shared.domain.messages import Recipient, RenderRequest, SubscriberEvent
from shared.domain.subscriber import Subscriber
from shared.repositories.subscribers import Subscribers
from shared.repositories.tokens import SingleUseTokens
from shared.services.confirmation import PURPOSE as CONFIRM_PURPOSE
from shared.services.publishing import Outbox

_ANALYTICS_TYPE = {
    msg.SIGNED_UP: ev.SIGNUP,
    msg.CONFIRMED: ev.CONFIRM,
    msg.UNSUBSCRIBED: ev.UNSUBSCRIBE,
    msg.PREFERENCES_CHANGED: ev.PREFERENCES_CHANGED,
}


class PreferenceSyncService:
    def __init__(
        self,
        subscribers: Subscribers,
        tokens: SingleUseTokens,
        outbox: Outbox,
        links: Links,
        signing_key: str,
        confirmation_ttl_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._subscribers = subscribers
        self._tokens = tokens
        self._outbox = outbox
        self._links = links
        self._signing_key = signing_key
        self._ttl = confirmation_ttl_s
        self._clock = clock

    def handle(self, event: SubscriberEvent) -> None:
        subscriber = self._subscribers.find(event.subscriber_id)
        if subscriber is None:
            raise NotFound(f"subscriber {event.subscriber_id} no longer exists (erased?)")
        if event.kind == msg.SIGNED_UP:
            self._send_confirmation(event, subscriber)
        elif event.kind == msg.CONFIRMED:
            self._send_welcome(event, subscriber)
        self._outbox.analytics([self._analytics(event, subscriber)])

    def _confirmation_token(self, event_id: str) -> str:
        """Derived from the event, so a redelivered event mails the same working link."""
        mac = hmac.new(self._signing_key.encode(), f"confirm:{event_id}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def _send_confirmation(self, event: SubscriberEvent, subscriber: Subscriber) -> None:
        token = self._confirmation_token(event.event_id)
        expires = event.occurred_at + self._ttl
        self._tokens.issue(token, CONFIRM_PURPOSE, subscriber.id, expires)
        recipient = Recipient(
            subscriber.id,
            subscriber.email,
            subscriber.first_name,
            {"confirm_url": self._links.confirm(token), "expires_hours": round(self._ttl / 3600)},
            tracking=False,
        )
        self._render(f"tx-confirm-{event.event_id}", template_names.CONFIRM_EMAIL,
                     msg.TRANSACTIONAL, recipient, event)  # fmt: skip

    def _send_welcome(self, event: SubscriberEvent, subscriber: Subscriber) -> None:
        """The welcome series (day 0, 3 and 7) is three triggers on `subscriber.confirmed`
        (templates/triggers/triggers.yaml); the event's key comes from this event's id, so a
        redelivery starts no second series."""
        source = {"source": event.data.get("source")}
        confirmed = lifecycle_event(
            subscriber.id, SUBSCRIBER_CONFIRMED, event.occurred_at, event.event_id, source
        )
        self._outbox.publish_json(topology.BEHAVIOUR_EVENTS, messages_for([confirmed]))

    def _render(
        self, batch_id: str, template: str, kind: str, recipient: Recipient, event: SubscriberEvent
    ) -> None:
        request = RenderRequest(
            batch_id=batch_id,
            template=template,
            kind=kind,
            audience_at=event.occurred_at,
            recipients=[recipient],
            track_opens=kind == msg.MARKETING,
            track_clicks=kind == msg.MARKETING,
        )
        self._outbox.publish_json(topology.RENDER_REQUESTS, [asdict(request)])

    def _analytics(self, event: SubscriberEvent, subscriber: Subscriber) -> AnalyticsEvent:
        return AnalyticsEvent(
            event_id=stable_id("subscriber-event", event.event_id),
            event_type=_ANALYTICS_TYPE.get(event.kind, event.kind),
            occurred_at=utc_iso(event.occurred_at),
            subscriber_id=subscriber.id,
            campaign_id=event.data.get("campaign_id"),
            mailbox_provider=mailbox_provider(subscriber.email),
            reason=event.data.get("source"),
            properties={k: v for k, v in event.data.items() if k not in ("campaign_id", "source")},
        )
