"""Subscribers, keyed by a keyed hash of the address so signing up twice finds the same one.

Every write also hands the subscriber's mirror row (shared/domain/subscriber_mirror.py) to
`mirror`, which the container wires to the analytics topic, so the warehouse's subscriber mirror
follows the documents: after the document is written (a failed write mirrors nothing), only when
what the mirror keeps changed, and again when a change found nothing to do (it may be the retry
of one whose publish was lost). Imports mirror each commit of up to 500 in one call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from shared.domain.addresses import keyed_hash
from shared.domain.errors import NotFound
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.domain.subscriber_mirror import change_rows, state_of, tombstone
from shared.ports import MAX_BATCH_WRITES, BatchWrite, DocumentStore, Filter, paged

COLLECTION = "subscribers"
MirrorSink = Callable[[list[dict[str, Any]]], None]


def _no_mirror(rows: list[dict[str, Any]]) -> None:
    return None


class Subscribers:
    def __init__(
        self,
        store: DocumentStore,
        hash_key: str,
        mirror: MirrorSink = _no_mirror,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._hash_key = hash_key
        self._mirror = mirror
        self._clock = clock

    def _mirrored(self, states: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if states:
            self._mirror(change_rows(states, self._clock()))

    def id_for(self, email: str) -> str:
        return self.id_for_key(keyed_hash(self._hash_key, email))

    @staticmethod
    def id_for_key(key: str) -> str:
        """The id of the address whose keyed hash is `key` (the suppression list's key, when
        both use the same hash key, as the container builds them)."""
        return "s" + key[:31]

    def get(self, subscriber_id: str) -> Subscriber:
        doc = self._store.get(COLLECTION, subscriber_id)
        if doc is None:
            raise NotFound(f"no subscriber {subscriber_id}")
        return Subscriber.from_doc(doc)

    def find(self, subscriber_id: str) -> Subscriber | None:
        doc = self._store.get(COLLECTION, subscriber_id)
        return Subscriber.from_doc(doc) if doc else None

    def get_many(self, ids: Sequence[str]) -> dict[str, Subscriber]:
        return {k: Subscriber.from_doc(v) for k, v in self._store.get_many(COLLECTION, ids).items()}

    def create(self, subscriber: Subscriber) -> None:
        """Raises AlreadyExists when this address already has a subscriber."""
        self._store.create(COLLECTION, subscriber.id, subscriber.to_doc())
        self._mirrored([(subscriber.id, state_of(subscriber))])

    def create_many(self, subscribers: Sequence[Subscriber]) -> None:
        """Create each, in commits of at most 500; AlreadyExists (that commit written not at
        all) when one of them exists. One write each."""
        for start in range(0, len(subscribers), MAX_BATCH_WRITES):
            commit = subscribers[start : start + MAX_BATCH_WRITES]
            self._store.write_batch([
                BatchWrite(COLLECTION, s.id, s.new_doc(), create_only=True) for s in commit
            ])  # fmt: skip
            self._mirrored([(s.id, state_of(s)) for s in commit])

    def save(self, subscriber: Subscriber) -> None:
        self._store.put(COLLECTION, subscriber.id, subscriber.to_doc())
        self._mirrored([(subscriber.id, state_of(subscriber))])

    def change(self, subscriber_id: str, mutate: Callable[[Subscriber], bool]) -> Subscriber:
        """Atomically apply `mutate` (which returns False to write nothing). NotFound if absent."""
        before: list[dict[str, Any] | None] = [None]  # the mirror state the last attempt read

        def apply(doc: dict | None) -> dict | None:
            if doc is None:
                raise NotFound(f"no subscriber {subscriber_id}")
            subscriber = Subscriber.from_doc(doc)
            before[0] = state_of(subscriber)
            if not mutate(subscriber):
                before[0] = None  # nothing written: mirror the state as it is
                return None
            return subscriber.to_doc()

        changed = Subscriber.from_doc(self._store.update(COLLECTION, subscriber_id, apply) or {})
        after = state_of(changed)
        if after != before[0]:
            self._mirrored([(subscriber_id, after)])
        return changed

    def confirmed_count(self, by: float) -> int:
        """How many subscribers are confirmed, with a confirmation no later than `by`
        (a count aggregation: no document is read)."""
        return self._store.count(COLLECTION, [Filter("status", "==", CONFIRMED),
                                              Filter("confirmed_at", "<=", by)])  # fmt: skip

    def delete(self, subscriber_id: str) -> None:
        """Remove the document; the mirror gets the erasure's tombstone."""
        self._store.delete(COLLECTION, subscriber_id)
        self._mirrored([(subscriber_id, tombstone())])

    def mirror_rows(self, subscribers: Sequence[Subscriber]) -> list[dict[str, Any]]:
        """Mirror rows of these subscribers as they are now (rebuilding the mirror)."""
        return change_rows([(s.id, state_of(s)) for s in subscribers], self._clock())

    def pages(
        self, filters: Sequence[Filter] = (), page_size: int = 500
    ) -> Iterator[list[Subscriber]]:
        for page in paged(self._store, COLLECTION, filters, page_size):
            yield [Subscriber.from_doc(doc) for _, doc in page]
