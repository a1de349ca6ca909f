"""Subscribers as a person on the team looks after them: find, edit lists and attributes,
unsubscribe or suppress by hand, and read the suppression list.

Edits go through the subscriber repository's atomic change and publish the same
preferences-changed event as the preference center, so the warehouse mirror follows;
unsubscribing uses the unsubscribe service (suppression entry, event), as a link click does.
Search by name pages through the subscriber documents (one read each); it stops after
MAX_SCANNED, and says so. An address is found by its id, with one read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from shared import topology
from shared.domain.addresses import normalize_address
from shared.domain.errors import InvalidInput
from shared.domain.events import stable_id
from shared.domain.messages import PREFERENCES_CHANGED, SubscriberEvent
from shared.domain.subscriber import ConsentRecord, Subscriber
from shared.ports import DocumentStore
from shared.repositories import suppressions as suppression_reasons
from shared.repositories.subscribers import COLLECTION, Subscribers
from shared.repositories.suppressions import Suppressions
from shared.services.publishing import Outbox
from shared.services.unsubscribe import UnsubscribeService

MAX_SCANNED = 20_000
PAGE = 500
MAX_ATTRIBUTES_BYTES = 16_000


@dataclass(frozen=True)
class SearchResult:
    subscribers: list[Subscriber]
    scanned: int
    complete: bool  # False: stopped after MAX_SCANNED documents


class SubscriberAdmin:
    def __init__(
        self,
        store: DocumentStore,
        subscribers: Subscribers,
        suppressions: Suppressions,
        unsubscribe: UnsubscribeService,
        outbox: Outbox,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._subscribers = subscribers
        self._suppressions = suppressions
        self._unsubscribe = unsubscribe
        self._outbox = outbox
        self._clock = clock

    def search(self, query: str, limit: int = 50) -> SearchResult:
        """A whole address finds its subscriber directly; other text matches part of an
        address or a first name (case-insensitive)."""
        text = query.strip().lower()
        if not text:
            return SearchResult([], 0, True)
        if "@" in text and "." in text.rpartition("@")[2]:
            found = self._subscribers.find(self._subscribers.id_for(text))
            if found:
                return SearchResult([found], 1, True)
        return self._scan(text, limit)

    def _scan(self, text: str, limit: int) -> SearchResult:
        matches: list[Subscriber] = []
        scanned, cursor = 0, None
        while scanned < MAX_SCANNED and len(matches) < limit:
            page = self._store.query(COLLECTION, [], limit=PAGE, start_after=cursor)
            scanned += len(page)
            for _, doc in page:
                if (
                    text in str(doc.get("email", "")).lower()
                    or text in str(doc.get("first_name", "")).lower()
                ):
                    matches.append(Subscriber.from_doc(doc))
            if len(page) < PAGE:
                return SearchResult(matches[:limit], scanned, True)
            cursor = page[-1][0]
        return SearchResult(matches[:limit], scanned, False)

    def get(self, subscriber_id: str) -> Subscriber:
        return self._subscribers.get(subscriber_id)

    def edit(
        self, subscriber_id: str, lists: Sequence[str], tags: Sequence[str], attributes: object
    ) -> Subscriber:
        """Replace lists, tags and attributes (a JSON object); recorded in the consent log."""
        if not isinstance(attributes, dict):
            raise InvalidInput("attributes must be a JSON object", field="attributes")
        if len(json.dumps(attributes)) > MAX_ATTRIBUTES_BYTES:
            raise InvalidInput(f"attributes are larger than {MAX_ATTRIBUTES_BYTES} bytes",
                               field="attributes")  # fmt: skip
        names = {"lists": _names(lists, "lists"), "tags": _names(tags, "tags")}
        now = self._clock()

        def apply(s: Subscriber) -> bool:
            s.lists, s.tags, s.attributes = names["lists"], names["tags"], dict(attributes)
            s.consent.append(asdict(ConsentRecord("preferences", now, "console")))
            return True

        subscriber = self._subscribers.change(subscriber_id, apply)
        event = SubscriberEvent(
            stable_id(PREFERENCES_CHANGED, subscriber_id, now), PREFERENCES_CHANGED,
            subscriber_id, now,
            {"lists": subscriber.lists, "topics": subscriber.topics,
             "frequency": subscriber.frequency},
        )  # fmt: skip
        self._outbox.publish_json(topology.SUBSCRIBER_EVENTS, [asdict(event)])
        return subscriber

    def unsubscribe(self, subscriber_id: str) -> Subscriber:
        return self._unsubscribe.unsubscribe_subscriber(subscriber_id, "console")

    def suppress(self, subscriber_id: str, note: str = "") -> Subscriber:
        """Never mail this address again (a manual suppression; kept after erasure)."""
        now = self._clock()

        def apply(s: Subscriber) -> bool:
            s.suppressed = s.suppressed or suppression_reasons.MANUAL
            return True

        subscriber = self._subscribers.change(subscriber_id, apply)
        self._suppressions.add(subscriber.email, suppression_reasons.MANUAL, now,
                               f"console: {note}".strip(": ")[:200])  # fmt: skip
        return subscriber

    def suppression_list(self, limit: int = 200, after: str | None = None) -> list[dict[str, Any]]:
        """Entries (keyed hashes, never addresses) with reason, time and source."""
        rows = self._store.query(suppression_reasons.COLLECTION, [], limit=limit, start_after=after)
        return [{"key": key, **doc} for key, doc in rows]

    def suppression_reason(self, email: str) -> str | None:
        return self._suppressions.reason(normalize_address(email))


def _names(values: Sequence[str], field: str) -> list[str]:
    cleaned = sorted({v.strip() for v in values if v.strip()})
    if any(len(v) > 64 for v in cleaned):
        raise InvalidInput(f"{field} names must be at most 64 characters", field=field)
    return cleaned
