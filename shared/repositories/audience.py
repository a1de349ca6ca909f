"""The raw audience: confirmed subscribers in id order, one page (one store query) at a time.

Pages are bounded by ids, not only by a count, so that replaying a page after a crash reads the
same range of subscribers even if people were added or removed in between (see
`page(cursor, until=...)`).
"""

from __future__ import annotations

from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.ports import DocumentStore, Filter
from shared.repositories.subscribers import COLLECTION

_CONFIRMED = (Filter("status", "==", CONFIRMED),)


class AudiencePages:
    def __init__(self, store: DocumentStore, page_size: int = 500) -> None:
        self._store = store
        self.page_size = page_size

    def page(self, cursor: str | None, until: str | None = None) -> list[Subscriber]:
        """Confirmed subscribers with ids after `cursor`: the next `page_size` of them, or,
        when `until` is given, exactly those up to and including id `until` (more than one
        query only if people were inserted into that range since it was planned)."""
        if until is None:
            return self._query(cursor)
        found: list[Subscriber] = []
        while True:
            rows = self._query(cursor)
            found += [s for s in rows if s.id <= until]
            if len(rows) < self.page_size or not rows or rows[-1].id >= until:
                return found
            cursor = rows[-1].id

    def _query(self, cursor: str | None, limit: int | None = None) -> list[Subscriber]:
        rows = self._store.query(COLLECTION, _CONFIRMED, limit=limit or self.page_size,
                                 start_after=cursor)  # fmt: skip
        return [Subscriber.from_doc(doc) for _, doc in rows]

    def first(self, cursor: str | None, limit: int) -> list[Subscriber]:
        """The next `limit` confirmed subscribers after `cursor` (a look at a few, such as
        a preview's samples, reads only those: one read per document)."""
        return self._query(cursor, limit)
