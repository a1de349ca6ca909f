"""Subscribers, keyed by a keyed hash of the address so signing up twice finds the same one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from shared.domain.addresses import keyed_hash
from shared.domain.errors import NotFound
from shared.domain.subscriber import Subscriber
from shared.ports import MAX_BATCH_WRITES, BatchWrite, DocumentStore, Filter, paged

COLLECTION = "subscribers"


class Subscribers:
    def __init__(self, store: DocumentStore, hash_key: str) -> None:
        self._store = store
        self._hash_key = hash_key

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

    def create_many(self, subscribers: Sequence[Subscriber]) -> None:
        """Create each, in commits of at most 500; AlreadyExists (that commit written not at
        all) when one of them exists. One write each."""
        for start in range(0, len(subscribers), MAX_BATCH_WRITES):
            self._store.write_batch([
                BatchWrite(COLLECTION, s.id, s.new_doc(), create_only=True)
                for s in subscribers[start : start + MAX_BATCH_WRITES]
            ])  # fmt: skip

    def save(self, subscriber: Subscriber) -> None:
        self._store.put(COLLECTION, subscriber.id, subscriber.to_doc())

    def change(self, subscriber_id: str, mutate: Callable[[Subscriber], bool]) -> Subscriber:
        """Atomically apply `mutate` (which returns False to write nothing). NotFound if absent."""

        def apply(doc: dict | None) -> dict | None:
            if doc is None:
                raise NotFound(f"no subscriber {subscriber_id}")
            subscriber = Subscriber.from_doc(doc)
            return subscriber.to_doc() if mutate(subscriber) else None

        return Subscriber.from_doc(self._store.update(COLLECTION, subscriber_id, apply) or {})

    def delete(self, subscriber_id: str) -> None:
        self._store.delete(COLLECTION, subscriber_id)

    def pages(
        self, filters: Sequence[Filter] = (), page_size: int = 500
    ) -> Iterator[list[Subscriber]]:
        for page in paged(self._store, COLLECTION, filters, page_size):
            yield [Subscriber.from_doc(doc) for _, doc in page]
