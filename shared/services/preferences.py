"""The token-based preference center: change lists, topics and frequency, or leave all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from shared import topology
from shared.domain import links, tokens
from shared.domain.errors import InvalidInput
from shared.domain.events import stable_id
from shared.domain.mailing_lists import ListCatalog
from shared.domain.messages import PREFERENCES_CHANGED, SubscriberEvent
from shared.domain.subscriber import FREQUENCIES, ConsentRecord, Subscriber
from shared.repositories.subscribers import Subscribers
from shared.services.publishing import Outbox
from shared.services.unsubscribe import UnsubscribeService

TOPICS = ("news", "tips", "events", "deals")


@dataclass(frozen=True)
class PreferenceChange:
    lists: Sequence[str]
    topics: Sequence[str]
    frequency: str
    tracking: bool = True


def choices(raw: object, allowed: Sequence[str], field: str) -> list[str]:
    """A form or JSON value (one string, or a list of strings) as known names; InvalidInput
    otherwise, naming the field and what is allowed."""
    if raw in (None, ""):
        return []
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidInput(f"{field} must be a list of names", field=field)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise InvalidInput(
            f"unknown {field}: {', '.join(unknown)}; allowed: {', '.join(allowed)}", field=field
        )
    return list(dict.fromkeys(values))


def validate_change(change: PreferenceChange, lists: ListCatalog) -> PreferenceChange:
    lists.choose(list(change.lists))  # InvalidInput naming an unknown list
    unknown = [x for x in change.topics if x not in TOPICS]
    if unknown:
        raise InvalidInput(f"unknown topics: {', '.join(unknown)}", field="topics")
    if change.frequency not in FREQUENCIES:
        raise InvalidInput(f"frequency must be one of {', '.join(FREQUENCIES)}", "frequency")
    return change


class PreferenceService:
    def __init__(
        self,
        subscribers: Subscribers,
        unsubscribe: UnsubscribeService,
        outbox: Outbox,
        signing_key: str,
        clock: Callable[[], float],
        lists: ListCatalog,
    ) -> None:
        self.lists = lists  # the catalogue the page shows and changes are checked against
        self._subscribers = subscribers
        self._unsubscribe = unsubscribe
        self._outbox = outbox
        self._signing_key = signing_key
        self._clock = clock

    def subscriber(self, token: str) -> Subscriber:
        """Raises InvalidToken for a forged link and NotFound for an erased subscriber."""
        payload = tokens.verify(self._signing_key, links.PREFERENCES, token)
        return self._subscribers.get(str(payload["s"]))

    def update(self, token: str, change: PreferenceChange, ip: str = "") -> Subscriber:
        change = validate_change(change, self.lists)
        subscriber_id = self.subscriber(token).id
        now = self._clock()

        def apply(s: Subscriber) -> bool:
            s.lists, s.topics = sorted(set(change.lists)), sorted(set(change.topics))
            s.frequency, s.tracking = change.frequency, change.tracking
            s.consent.append(asdict(ConsentRecord("preferences", now, "preference-center", ip)))
            return True

        subscriber = self._subscribers.change(subscriber_id, apply)
        event = SubscriberEvent(
            stable_id(PREFERENCES_CHANGED, subscriber_id, now),
            PREFERENCES_CHANGED,
            subscriber_id,
            now,
            {"lists": subscriber.lists, "topics": subscriber.topics, "frequency": change.frequency},
        )
        self._outbox.publish_json(topology.SUBSCRIBER_EVENTS, [asdict(event)])
        return subscriber

    def leave_all(self, token: str, ip: str = "") -> Subscriber:
        subscriber_id = self.subscriber(token).id
        return self._unsubscribe.unsubscribe_subscriber(subscriber_id, "preference-center", ip=ip)
