"""Confirm (double opt-in): a single-use, expiring token turns a pending subscriber confirmed.

Order matters for retries: the token is read, the subscriber confirmed (idempotent), the event
published (with an id derived from the confirmation, so a retry republishes the same event), and
only then is the token spent. A failure anywhere leaves the link usable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from shared import topology
from shared.domain.errors import InvalidToken
from shared.domain.events import stable_id
from shared.domain.messages import CONFIRMED, SubscriberEvent
from shared.domain.subscriber import CONFIRMED as STATUS_CONFIRMED
from shared.domain.subscriber import UNSUBSCRIBED, ConsentRecord, Subscriber
from shared.repositories.subscribers import Subscribers
from shared.repositories.suppressions import Suppressions
from shared.repositories.tokens import SingleUseTokens
from shared.services.publishing import Outbox

PURPOSE = "confirm"


class ConfirmationService:
    def __init__(
        self,
        subscribers: Subscribers,
        suppressions: Suppressions,
        tokens: SingleUseTokens,
        outbox: Outbox,
        clock: Callable[[], float],
    ) -> None:
        self._subscribers = subscribers
        self._suppressions = suppressions
        self._tokens = tokens
        self._outbox = outbox
        self._clock = clock

    def confirm(self, token: str, ip: str = "", user_agent: str = "") -> Subscriber:
        """Raises InvalidToken for unknown, expired or used links."""
        now = self._clock()
        record = self._tokens.check(token, PURPOSE, now)
        consent = ConsentRecord("confirm", now, "confirmation-link", ip, user_agent[:300])

        def confirm(subscriber: Subscriber) -> bool:
            if subscriber.status == STATUS_CONFIRMED:
                return False
            if subscriber.status == UNSUBSCRIBED:
                # An old link (or a mail scanner following it) must not undo an unsubscribe:
                # coming back takes a new signup, which mails a new link.
                raise InvalidToken("this link is no longer valid; please sign up again")
            subscriber.confirm(now, consent)
            return True

        subscriber = self._subscribers.change(record["subscriber_id"], confirm)
        self._suppressions.lift_for_opt_in(subscriber.email)
        event = SubscriberEvent(
            stable_id(CONFIRMED, subscriber.id, subscriber.confirmed_at),
            CONFIRMED,
            subscriber.id,
            subscriber.confirmed_at or now,
        )
        self._outbox.publish_json(topology.SUBSCRIBER_EVENTS, [asdict(event)])
        self._tokens.consume(token, PURPOSE, now)
        return subscriber
