"""FirestoreDocuments: the DocumentStore port on Firestore (Native mode).

How each promise of the port is kept:
- create-if-absent is `DocumentReference.create` (a write with an exists=false precondition);
- `update` runs `mutate` inside a Firestore transaction (`@firestore.transactional`). Firestore
  locks what the transaction read; a competing commit makes ours abort and the client re-runs
  `mutate` on the fresh document (up to `max_attempts`, then TransientError). An exception from
  `mutate` rolls the transaction back, so nothing is written;
- `query` orders by document id (`FieldPath.document_id()`) and pages with a cursor on it.

One rule of Firestore shows through: a range or != filter must be ordered by its field first,
so a query with one is ordered by (that field, id) instead of by id alone. Paging by passing the
last id back still visits every match once: the cursor is built from that document's values
(one extra read per page).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from shared.adapters.gcp import clients
from shared.adapters.gcp.errors import translated
from shared.domain.errors import InvalidInput, NotFound, TransientError
from shared.metering import NULL_METER, OperationMeter
from shared.ports import BatchWrite, Document, Filter, check_batch, count_reads
from shared.settings import Settings

if TYPE_CHECKING:
    from google.cloud.firestore_v1.base_query import BaseQuery

_OPERATORS = {
    "==": "==",
    "!=": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "array_contains": "array_contains",
    "in": "in",
}
_ORDERING_OPERATORS = frozenset({"!=", "<", "<=", ">", ">="})
_GET_ALL_CHUNK = 300  # documents per BatchGetDocuments call


class FirestoreDocuments:
    def __init__(
        self, client: firestore.Client, meter: OperationMeter = NULL_METER, max_attempts: int = 10
    ) -> None:
        self._client = client
        self._meter = meter
        self._max_attempts = max_attempts

    @classmethod
    def from_settings(
        cls, settings: Settings, meter: OperationMeter = NULL_METER
    ) -> FirestoreDocuments:
        """Database `settings.firestore_database` of project `settings.gcp_project`."""
        return cls(clients.firestore_client(settings), meter)

    def _ref(self, collection: str, doc_id: str) -> firestore.DocumentReference:
        if not collection or not doc_id or "/" in collection or "/" in doc_id:
            raise InvalidInput(f"invalid document path {collection!r}/{doc_id!r}", field="doc_id")
        return self._client.collection(collection).document(doc_id)

    def get(self, collection: str, doc_id: str) -> Document | None:
        ref = self._ref(collection, doc_id)
        self._meter.count("firestore.read", detail=collection)
        with translated(f"get {collection}/{doc_id}"):
            snapshot = ref.get()
        return snapshot.to_dict() if snapshot.exists else None

    def get_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, Document]:
        refs = [self._ref(collection, doc_id) for doc_id in dict.fromkeys(doc_ids)]
        self._meter.count("firestore.read", len(refs), detail=collection)
        found: dict[str, Document] = {}
        for start in range(0, len(refs), _GET_ALL_CHUNK):
            with translated(f"get_all {collection}"):
                snapshots = list(self._client.get_all(refs[start : start + _GET_ALL_CHUNK]))
            found.update((s.id, s.to_dict() or {}) for s in snapshots if s.exists)
        return found

    def create(self, collection: str, doc_id: str, data: Document) -> None:
        ref = self._ref(collection, doc_id)
        self._meter.count("firestore.write", detail=collection)
        with translated(f"create {collection}/{doc_id}"):
            ref.create(data)

    def put(self, collection: str, doc_id: str, data: Document) -> None:
        ref = self._ref(collection, doc_id)
        self._meter.count("firestore.write", detail=collection)
        with translated(f"put {collection}/{doc_id}"):
            ref.set(data)

    def update(
        self, collection: str, doc_id: str, mutate: Callable[[Document | None], Document | None]
    ) -> Document | None:
        ref = self._ref(collection, doc_id)
        wrote: list[bool] = []

        @firestore.transactional
        def read_modify_write(transaction: firestore.Transaction) -> Document | None:
            wrote.clear()
            self._meter.count("firestore.read", detail=collection)
            snapshot = ref.get(transaction=transaction)
            current = snapshot.to_dict() if snapshot.exists else None
            new = mutate(current)
            if new is None:
                return current
            transaction.set(ref, new)
            wrote.append(True)
            return new

        transaction = self._client.transaction(max_attempts=self._max_attempts)
        try:
            with translated(f"update {collection}/{doc_id}"):
                stored = read_modify_write(transaction)
        except ValueError as exc:  # the client's "failed to commit in N attempts"
            if isinstance(exc.__cause__, gexc.Aborted):
                raise TransientError(f"update {collection}/{doc_id}: contention: {exc}") from exc
            raise
        if wrote:
            self._meter.count("firestore.write", detail=collection)
        return stored

    def delete(self, collection: str, doc_id: str) -> None:
        ref = self._ref(collection, doc_id)
        self._meter.count("firestore.delete", detail=collection)
        with translated(f"delete {collection}/{doc_id}"):
            ref.delete()

    def write_batch(self, writes: Sequence[BatchWrite]) -> None:
        """One WriteBatch commit: atomic, `create` carries the exists=false precondition."""
        check_batch(writes)
        if not writes:
            return
        batch = self._client.batch()
        for w in writes:
            ref = self._ref(w.collection, w.doc_id)
            if w.create_only:
                batch.create(ref, w.data)
            else:
                batch.set(ref, w.data)
        with translated(f"batch of {len(writes)} writes"):
            batch.commit()
        for collection, n in Counter(w.collection for w in writes).items():
            self._meter.count("firestore.write", n, detail=collection)

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        *,
        limit: int = 500,
        start_after: str | None = None,
    ) -> list[tuple[str, Document]]:
        ordering_fields = sorted({f.field for f in filters if f.op in _ORDERING_OPERATORS})
        query: Any = self._filtered(collection, filters)
        for field in ordering_fields:
            query = query.order_by(field)
        query = query.order_by(FieldPath.document_id())
        if start_after is not None:
            query = query.start_after(self._cursor(collection, start_after, ordering_fields))
        with translated(f"query {collection}"):
            snapshots = list(query.limit(limit).stream())
        # Firestore bills a query at least one read even when it returns nothing.
        self._meter.count("firestore.read", max(1, len(snapshots)), detail=collection)
        return [(s.id, s.to_dict() or {}) for s in snapshots]

    def count(self, collection: str, filters: Sequence[Filter] = ()) -> int:
        aggregation: Any = self._filtered(collection, filters).count(alias="n")
        with translated(f"count {collection}"):
            (results,) = aggregation.get()  # one list of results per aggregation query
        matched = int(results[0].value)
        self._meter.count("firestore.read", count_reads(matched), detail=collection)
        return matched

    def _filtered(self, collection: str, filters: Sequence[Filter]) -> BaseQuery:
        query: Any = self._client.collection(collection)
        for f in filters:
            if f.op not in _OPERATORS:
                raise InvalidInput(f"unsupported filter operator {f.op!r}", field="op")
            if f.op == "in" and not isinstance(f.value, list | tuple):
                raise InvalidInput("the 'in' operator needs a list of values", field="value")
            value = list(f.value) if f.op == "in" else f.value
            query = query.where(filter=FieldFilter(f.field, _OPERATORS[f.op], value))
        return query

    def _cursor(self, collection: str, doc_id: str, ordering_fields: list[str]) -> dict[str, Any]:
        """Cursor values after document `doc_id` for the query's order."""
        cursor: dict[str, Any] = {FieldPath.document_id(): self._ref(collection, doc_id)}
        if not ordering_fields:
            return cursor
        last = self.get(collection, doc_id)
        if last is None:
            raise NotFound(f"cannot page after {collection}/{doc_id}: it no longer exists")
        for field in ordering_fields:
            cursor[field] = _lookup(last, field)
        return cursor


def _lookup(document: Document, dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
