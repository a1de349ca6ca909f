"""Ports: the contracts between services and the outside world.

Each port has a local adapter (shared/adapters/local) and a GCP adapter (shared/adapters/gcp);
one contract test suite per port runs against both. Errors are the domain's
(shared/domain/errors.py): adapters translate SDK errors at the boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from shared.domain.errors import InvalidInput

if TYPE_CHECKING:
    from shared.domain.feedback import FeedbackEvent

Document = dict[str, Any]
FilterOp = Literal["==", "!=", "<", "<=", ">", ">=", "array_contains", "in"]


MAX_BATCH_WRITES = 500  # Firestore's limit of writes in one commit


@dataclass(frozen=True)
class BatchWrite:
    """One write of a batch: replace `collection/doc_id` with `data`, or with `create_only`
    create it only if absent."""

    collection: str
    doc_id: str
    data: dict[str, Any]
    create_only: bool = False


def count_reads(matched: int) -> int:
    """What a count aggregation is billed: one read per 1,000 index entries, at least one."""
    return max(1, -(-matched // 1000))


def check_batch(writes: Sequence[BatchWrite]) -> None:
    """The port's limits on one batch (both adapters check them the same way)."""
    if len(writes) > MAX_BATCH_WRITES:
        raise InvalidInput(f"a batch takes at most {MAX_BATCH_WRITES} writes, not {len(writes)}")
    if len({(w.collection, w.doc_id) for w in writes}) != len(writes):
        raise InvalidInput("a batch names the same document twice")


@dataclass(frozen=True)
class Filter:
    """`field` (dotted path into the document) `op` `value`."""

    field: str
    op: FilterOp
    value: Any


class DocumentStore(Protocol):
    """Schemaless JSON documents in named collections (SQLite locally, Firestore on GCP).

    Every method may raise TransientError (lock contention, 429/503, deadlines).
    """

    def get(self, collection: str, doc_id: str) -> Document | None:
        """The document, or None when absent. One read."""

    def get_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, Document]:
        """The documents that exist among `doc_ids`, keyed by id. One read each."""

    def create(self, collection: str, doc_id: str, data: Document) -> None:
        """Create-if-absent. Raises AlreadyExists when the id is taken. One write."""

    def put(self, collection: str, doc_id: str, data: Document) -> None:
        """Create or replace the whole document. One write."""

    def update(
        self, collection: str, doc_id: str, mutate: Callable[[Document | None], Document | None]
    ) -> Document | None:
        """Atomic read-modify-write. `mutate` gets the current document (or None) and returns
        the new one, or None to change nothing; it may run more than once under contention, so
        it must be pure. Returns what is stored afterwards. Errors raised by `mutate` propagate
        and nothing is written."""

    def delete(self, collection: str, doc_id: str) -> None:
        """Remove the document; absent is fine. One write."""

    def write_batch(self, writes: Sequence[BatchWrite]) -> None:
        """Commit up to MAX_BATCH_WRITES writes atomically: all or none. One write each.
        Raises AlreadyExists (and writes nothing) when a `create_only` document exists,
        InvalidInput for more than MAX_BATCH_WRITES writes or one document named twice."""

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        *,
        limit: int = 500,
        start_after: str | None = None,
    ) -> list[tuple[str, Document]]:
        """Up to `limit` (id, document) pairs matching every filter, ordered by id, starting
        after id `start_after`. Page through large collections by passing the last id back."""

    def count(self, collection: str, filters: Sequence[Filter] = ()) -> int:
        """How many documents match every filter, without reading them (Firestore's count
        aggregation, billed one read per 1,000 index entries matched, at least one)."""


@dataclass(frozen=True)
class OutboundMessage:
    """One message to publish on a topic."""

    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)


class Publisher(Protocol):
    """Publishes to topics (the SQLite bus locally, Pub/Sub on GCP)."""

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        """Publish in order and return the message ids only once every message is durably
        accepted. Raises TransientError when the bus cannot confirm; then some may have been
        published, which at-least-once consumers tolerate."""


@dataclass(frozen=True)
class DeadLetter:
    """A message that exhausted its delivery attempts on `subscription`."""

    message_id: str
    subscription: str
    data: bytes
    attributes: Mapping[str, str]
    published_at: str
    dead_lettered_at: str
    attempts: int
    last_error: str


class DeadLetters(Protocol):
    """What an operator does with dead letters, per subscription."""

    def counts(self) -> dict[str, int]:
        """Dead letters waiting, per subscription name (every subscription is listed)."""

    def list(self, subscription: str, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters of one subscription."""

    def replay(self, subscription: str, message_ids: Sequence[str] | None = None) -> int:
        """Deliver dead letters to the subscription's function again (all when ids is None);
        returns how many were requeued. Consumers are idempotent, so replay is safe twice."""

    def purge(self, subscription: str, message_ids: Sequence[str] | None = None) -> int:
        """Drop dead letters for good; returns how many."""


class BlobStore(Protocol):
    """Named immutable-ish objects (the filesystem locally, Cloud Storage on GCP)."""

    def read(self, name: str) -> bytes:
        """The object's bytes. Raises NotFound."""

    def version(self, name: str) -> str:
        """A token that changes whenever the object's content changes (GCS generation,
        file mtime+size locally). Raises NotFound."""

    def list(self, prefix: str = "") -> list[str]:
        """Object names under `prefix`, sorted."""

    def write(self, name: str, data: bytes) -> None:
        """Create or replace the object."""

    def read_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (fewer at its end; empty past it). Raises NotFound.
        Large objects (an import file) are read a piece at a time with it."""

    def size(self, name: str) -> int:
        """The object's size in bytes. Raises NotFound."""


class Warehouse(Protocol):
    """The analytics event store (DuckDB over Parquet locally, BigQuery on GCP)."""

    def append(self, events: Sequence[Document]) -> None:
        """Store events; each has a unique `event_id`. Storing the same event twice is allowed
        (retries do it); every read deduplicates by `event_id`. Raises TransientError."""

    def append_subscribers(self, rows: Sequence[Document]) -> None:
        """Store subscriber mirror change rows (shared/domain/subscriber_mirror.py) in
        `subscribers_raw`; each has a unique `change_id`, and storing one twice is allowed (reads
        take the latest row per subscriber). Raises TransientError."""

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Document]:
        """Rows of a read-only query over the deduplicated `events` relation (and
        `events_raw`, `subscribers_raw`)."""

    def query_pages(
        self, sql: str, params: Mapping[str, Any] | None, page_size: int
    ) -> Generator[list[Document], None, None]:
        """The rows of one read-only query (one query job), a page of about `page_size` at a
        time, so a large result (an audience) is never held whole."""

    def erase_subscriber(self, subscriber_id: str) -> int:
        """Delete (or pseudonymize) every row about one subscriber, their mirror rows blanked
        too; returns rows affected."""


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered, personalized message ready for a provider."""

    message_id: str  # RFC 5322 Message-ID without angle brackets; deterministic
    sender: str
    recipient: str
    subject: str
    html: str
    text: str
    headers: Mapping[str, str]  # extra headers, e.g. List-Unsubscribe
    raw: bytes  # the complete MIME message, for providers that take raw mail
    subscriber_id: str = ""
    campaign_id: str | None = None  # for the providers' correlation args (webhooks)


SendStatus = Literal["sent", "transient", "permanent"]


@dataclass(frozen=True)
class SendResult:
    """What the provider said about one message."""

    message_id: str
    status: SendStatus
    provider_message_id: str = ""
    detail: str = ""


class Mailer(Protocol):
    """An email service provider (SMTP, SendGrid, Mailgun, SES, or a null sink)."""

    name: str

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        """Hand messages to the provider and report each one's fate, in order. A per-recipient
        rejection is a result, not an exception. Raises Throttled when the provider asks us to
        slow down before accepting anything, TransientError when it is unreachable."""


class WebhookParser(Protocol):
    """One provider's webhook: signature verification first, then normalization."""

    name: str

    def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> list[FeedbackEvent]:
        """Verify the signature over the raw body, then normalize every event in it.
        Raises Unauthorized (missing, invalid or stale signature) before looking at the content,
        and InvalidInput for a malformed body."""


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds since the epoch."""


def paged(
    store: DocumentStore, collection: str, filters: Sequence[Filter] = (), page_size: int = 500
) -> Iterator[list[tuple[str, Document]]]:
    """Pages of a query, one store round trip each, in id order."""
    start_after: str | None = None
    while True:
        page = store.query(collection, filters, limit=page_size, start_after=start_after)
        if not page:
            return
        yield page
        if len(page) < page_size:
            return
        start_after = page[-1][0]
