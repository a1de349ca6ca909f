"""SqliteBus: the local durable bus, with Pub/Sub's semantics on one SQLite file.

It implements the Publisher and DeadLetters ports. What the rest of Mailpipe may rely on:

- `publish` fans every message out to every subscription of the topic and commits them all
  in one transaction before it returns, so a `kill -9` afterwards loses nothing. (WAL with
  synchronous=NORMAL survives the death of the process, not a power cut.) A topic without
  subscriptions keeps nothing, as in Pub/Sub, except a dead-letter topic, whose messages
  wait in its "-hold" pull subscription for an operator.
- Delivery is at least once. `pull` leases messages for the subscription's ack deadline;
  no one else receives a message while its lease holds, and a lease that runs out (the
  worker died) makes it deliverable again. Consumers must therefore be idempotent.
- `nack` schedules redelivery after the subscription's exponential backoff. The delivery
  that reaches `max_attempts` goes to the subscription's dead-letter hold instead, keeping
  its data, attributes, attempts and last error; `replay` and `purge` act on the hold.
- Capacity, as Cloud Run has it: a subscription may have a limit of deliveries in flight (its
  function's instances x concurrency, `capacities`). Pub/Sub pushes every due message; one
  that finds the function full is answered 429, and Pub/Sub counts that as a failed attempt.
  So each `pull` refuses every due message beyond the free capacity: its attempt counts, it
  waits out the backoff, and the refusal at `max_attempts` dead-letters it, as a nack would.

Storage is one row per (subscription, message) in `deliveries`. The `due` column is when a
row may be pulled next: its publish time when fresh, the end of its lease while leased, the
end of its backoff after a nack. Dead letters are rows of the hold subscription in state
'dead', so `pull` never has to skip them.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from shared import topology
from shared.adapters.local.write_lock import WriteLock
from shared.domain.errors import InvalidInput, NotFound, TransientError
from shared.metering import NULL_METER, OperationMeter
from shared.ports import DeadLetter, OutboundMessage
from shared.pricing import PUBSUB_MIN_BYTES
from shared.topology import RetryPolicy, Subscription

PUSH_PROJECT = "local"
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
_BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS id_sequence (
    only INTEGER PRIMARY KEY CHECK (only = 0),
    last INTEGER NOT NULL
);
INSERT OR IGNORE INTO id_sequence (only, last) VALUES (0, 0);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY,
    subscription TEXT NOT NULL,
    message_id TEXT NOT NULL,
    data BLOB NOT NULL,
    attributes TEXT NOT NULL,
    publish_time TEXT NOT NULL,
    published_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'dead')),
    due REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    dead_lettered_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_by_message ON deliveries (subscription, message_id);
CREATE INDEX IF NOT EXISTS deliveries_by_due ON deliveries (subscription, due);
"""

_INSERT = """
INSERT INTO deliveries (subscription, message_id, data, attributes, publish_time,
                        published_at, state, due, dead_lettered_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_DUE = "SELECT seq FROM deliveries WHERE subscription = ? AND due <= ? ORDER BY due LIMIT ?"

_ACK = "DELETE FROM deliveries WHERE subscription = ? AND message_id = ?"

_LEASE = """
UPDATE deliveries SET state = 'leased', attempt = attempt + 1, due = ?
WHERE seq IN ({marks})
RETURNING seq, message_id, data, attributes, publish_time, attempt
"""

_IN_FLIGHT = """
SELECT COUNT(*) FROM deliveries WHERE subscription = ? AND state = 'leased' AND due > ?
"""

_DUE_ATTEMPTS = """
SELECT seq, message_id, attempt, length(data) FROM deliveries
WHERE subscription = ? AND due <= ? ORDER BY due LIMIT -1 OFFSET ?
"""

_DUE_COUNT = """
SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE subscription = ? AND due <= ? LIMIT ?)
"""

_REFUSE = """
UPDATE deliveries SET state = 'pending', attempt = ?, due = ?, last_error = ? WHERE seq = ?
"""

AT_CAPACITY = "429: the function is at its capacity (instances x concurrency)"

_TO_HOLD = """
UPDATE deliveries SET subscription = :hold, state = 'dead', due = :now, attempt = :attempts,
                      last_error = :error, dead_lettered_at = :now
WHERE subscription = :sub AND message_id = :id
"""

_DEPTHS = """
SELECT subscription,
       SUM(state != 'dead' AND due <= :now), SUM(state = 'leased' AND due > :now),
       SUM(state = 'pending' AND due > :now), SUM(state = 'dead'), MIN(published_at)
FROM deliveries GROUP BY subscription
"""


@dataclass(frozen=True)
class Delivery:
    """One leased delivery of a message to a subscription; `attempt` is 1 the first time."""

    message_id: str
    subscription: str
    data: bytes
    attributes: dict[str, str]
    publish_time: str
    attempt: int


class Depth(TypedDict):
    """Backlog of one subscription. `ready` includes messages whose lease ran out."""

    ready: int
    leased: int
    backoff: int
    dead_lettered: int
    oldest_age_s: float


def push_body(delivery: Delivery, project: str = PUSH_PROJECT) -> dict[str, Any]:
    """The JSON body a Pub/Sub push subscription POSTs for `delivery`.

    functions-framework turns it into the CloudEvent
    `google.cloud.pubsub.topic.v1.messagePublished`; POST it to a path containing
    `projects/<project>/topics/<topic>` and that becomes the event's source.
    """
    message = {
        "data": base64.b64encode(delivery.data).decode("ascii"),
        "attributes": dict(delivery.attributes),
        "messageId": delivery.message_id,
        "message_id": delivery.message_id,
        "publishTime": delivery.publish_time,
        "publish_time": delivery.publish_time,
    }
    return {
        "message": message,
        "subscription": f"projects/{project}/subscriptions/{delivery.subscription}",
        "deliveryAttempt": delivery.attempt,
    }


def event_headers(delivery: Delivery, topic: str, project: str = PUSH_PROJECT) -> dict[str, str]:
    """The CloudEvent attributes, as HTTP headers (binary content mode), with which Eventarc
    delivers `delivery` to a 2nd-gen function; the request body is `push_body(delivery)`."""
    return {
        "ce-specversion": "1.0",
        "ce-type": MESSAGE_PUBLISHED,
        "ce-source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
        "ce-id": delivery.message_id,
        "ce-time": delivery.publish_time,
    }


class _Connection(sqlite3.Connection):
    """A plain connection that, unlike sqlite3.Connection, can be weakly referenced."""


class SqliteBus:
    """The Publisher and DeadLetters ports, plus pull/ack/nack for the local workers.

    Safe to share between threads (one connection per thread) and between processes
    (every write is a BEGIN IMMEDIATE transaction, taken in turn through a WriteLock).
    Every method may raise TransientError when SQLite stays locked past the busy timeout.
    """

    push_body = staticmethod(push_body)

    def __init__(
        self,
        path: Path,
        subscriptions: Sequence[Subscription] = topology.SUBSCRIPTIONS,
        clock: Callable[[], float] = time.time,
        retry_override: RetryPolicy | None = None,
        meter: OperationMeter | None = None,
        capacities: Mapping[str, int] | None = None,
    ) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._retry_override = retry_override
        self._meter = meter or NULL_METER
        self._subscriptions = {s.name: s for s in subscriptions}
        self._capacities = dict(capacities or {})  # subscription -> deliveries in flight at most
        self._holds = {s.dead_letter_subscription: s for s in subscriptions}
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._write_lock = WriteLock(self._path)
        self._create_schema()

    # -- connections and transactions ---------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, factory=_Connection
            )
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            self._connections.add(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement, so a
        read followed by a write can never be overtaken by another writer."""
        conn = self._conn()
        try:
            with self._write_lock.hold():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as exc:  # "database is locked", I/O errors
            raise TransientError(f"local bus unavailable: {exc}") from exc

    def _create_schema(self) -> None:
        # executescript runs outside Python's transaction handling, so the script carries
        # its own; IMMEDIATE makes concurrent first starts wait rather than fail.
        try:
            with self._write_lock.hold():
                self._conn().executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        except sqlite3.OperationalError as exc:
            raise TransientError(f"local bus unavailable: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise TransientError(f"local bus unavailable: {exc}") from exc

    def close(self) -> None:
        """Close every connection this bus opened; the bus must not be used afterwards."""
        for conn in list(self._connections):
            conn.close()
        self._write_lock.close()

    # -- topology lookups ----------------------------------------------------------------

    def ack_deadline_s(self, subscription: str) -> float:
        """How long a pulled message stays leased to its puller."""
        return float(self._subscription(subscription).ack_deadline_s)

    def _subscription(self, name: str) -> Subscription:
        try:
            return self._subscriptions[name]
        except KeyError:
            known = ", ".join(self._subscriptions)
            raise NotFound(f"no subscription {name!r}; known: {known}") from None

    def _retry(self, subscription: Subscription) -> RetryPolicy:
        """The subscription's policy, with the override's backoff; the override's
        max_attempts applies only when set (> 0), so each stage keeps its own otherwise."""
        override = self._retry_override
        if override is None:
            return subscription.retry
        attempts = override.max_attempts or subscription.retry.max_attempts
        return RetryPolicy(override.minimum_backoff_s, override.maximum_backoff_s, attempts)

    def _targets(self, topic: str) -> list[tuple[str, str]]:
        """(subscription, initial state) for each copy a message on `topic` becomes."""
        targets = [(s.name, "pending") for s in self._subscriptions.values() if s.topic == topic]
        targets += [(h, "dead") for h, s in self._holds.items() if s.dead_letter_topic == topic]
        return targets

    # -- Publisher -----------------------------------------------------------------------

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        """Publish in order; returns the new message ids once all are committed.

        Raises InvalidInput for a message Pub/Sub would refuse (no data and no attributes,
        or attributes that are not str -> str) before anything is written.
        """
        for message in messages:
            _check(message)
        if not messages:
            return []
        now = self._clock()
        stamp = _rfc3339(now)
        targets = self._targets(topic)
        with self._transaction() as conn:
            (last,) = conn.execute(
                "UPDATE id_sequence SET last = last + ? RETURNING last", (len(messages),)
            ).fetchone()
            ids = [_message_id(n) for n in range(last - len(messages) + 1, last + 1)]
            conn.executemany(_INSERT, _rows(targets, ids, messages, stamp, now))
        for message in messages:
            self._meter.count("pubsub.publish", 1, len(message.data))
            self._meter.count("pubsub.billable_bytes", 1, billable_bytes(message.data),
                              detail=f"publish:{topic}")  # fmt: skip
        return ids

    # -- consuming -----------------------------------------------------------------------

    def pull(
        self,
        subscription: str,
        max_messages: int = 10,
        lease_s: float | None = None,
        ack: Sequence[str] = (),
    ) -> list[Delivery]:
        """Lease up to `max_messages` due messages, oldest due first, for `lease_s`
        (default: the subscription's ack deadline). Returns [] when nothing is due.

        `ack`: message ids of this subscription to acknowledge first, in the same transaction
        (a worker settles its last batch and takes the next in one write); they are
        acknowledged even when nothing is due.

        A message whose lease ran out after its last allowed attempt is dead-lettered here
        instead of being delivered again, so a message that crashes its worker every time
        still ends in the hold.
        """
        sub = self._subscription(subscription)
        now = self._clock()
        # A read-only probe first: idle workers poll often and must not take the write lock.
        if not ack and not self._read(
            "SELECT 1 FROM deliveries WHERE subscription = ? AND due <= ? LIMIT 1",
            (subscription, now),
        ):
            return []
        until = now + (sub.ack_deadline_s if lease_s is None else lease_s)
        policy = self._retry(sub)
        max_attempts = policy.max_attempts
        with self._transaction() as conn:
            if ack:
                conn.executemany(_ACK, [(subscription, message_id) for message_id in ack])
            free = self._free_capacity(conn, subscription, now)
            if free is not None:
                max_messages = min(max_messages, free)
                self._refuse_beyond(conn, sub, policy, now, offset=free)
            due = [seq for (seq,) in conn.execute(_DUE, (subscription, now, max_messages))]
            if not due:
                return []
            leased = conn.execute(_LEASE.format(marks=",".join("?" * len(due))), (until, *due))
            position = {seq: i for i, seq in enumerate(due)}
            rows = sorted(leased.fetchall(), key=lambda row: position[row[0]])
            for _, message_id, *_rest, attempt in rows:
                if attempt > max_attempts:  # not delivered after all
                    self._dead_letter(conn, sub, message_id, now, attempt - 1, None)
        deliveries = [
            Delivery(mid, subscription, data, json.loads(attrs), stamp, attempt)
            for _, mid, data, attrs, stamp, attempt in rows
            if attempt <= max_attempts
        ]
        for d in deliveries:
            self._meter.count("pubsub.delivery", 1, len(d.data))
            self._meter.count("pubsub.billable_bytes", 1, billable_bytes(d.data),
                              detail=f"push:{subscription}")  # fmt: skip
        return deliveries

    def refuse_overflow(self) -> int:
        """Refuse now, on every subscription with a capacity, the due messages beyond what
        it has free, as Pub/Sub's pushes find the function full the moment they are due
        (`pull` does the same, but only when a worker is free to pull). One bounded index
        probe per subscription when nothing is due. Returns how many were refused."""
        refused = 0
        now = self._clock()
        for name, limit in self._capacities.items():
            (due,) = self._read(_DUE_COUNT, (name, now, limit + 1))[0]
            if not due:
                continue
            sub = self._subscription(name)
            with self._transaction() as conn:
                free = self._free_capacity(conn, name, now) or 0
                if due > free:
                    refused += self._refuse_beyond(conn, sub, self._retry(sub), now, free)
        return refused

    def capacity(self, subscription: str) -> int | None:
        """Deliveries of `subscription` that may be in flight at once; None: no limit."""
        return self._capacities.get(subscription)

    def _free_capacity(self, conn: sqlite3.Connection, subscription: str, now: float) -> int | None:
        limit = self._capacities.get(subscription)
        if limit is None:
            return None
        (in_flight,) = conn.execute(_IN_FLIGHT, (subscription, now)).fetchone()
        return max(0, limit - in_flight)

    def _refuse_beyond(
        self,
        conn: sqlite3.Connection,
        sub: Subscription,
        policy: RetryPolicy,
        now: float,
        offset: int,
    ) -> int:
        """Refuse (429) every due message after the first `offset` (those the free capacity
        takes): each refusal is a failed attempt, backed off or, at the last, dead-lettered."""
        refused = conn.execute(_DUE_ATTEMPTS, (sub.name, now, offset)).fetchall()
        retried = []
        for seq, message_id, attempt, size in refused:
            delivery = attempt + 1  # the push that was refused, billed like any other
            self._meter.count("pubsub.refused", 1, size)
            self._meter.count(f"pubsub.refused.{sub.function}", 1, size)
            self._meter.count("pubsub.billable_bytes", 1, max(PUBSUB_MIN_BYTES, size))
            if delivery >= policy.max_attempts:
                self._dead_letter(conn, sub, message_id, now, delivery, AT_CAPACITY)
            else:
                retried.append((delivery, now + policy.backoff(delivery), AT_CAPACITY, seq))
        conn.executemany(_REFUSE, retried)
        return len(refused)

    def ack(self, subscription: str, message_id: str) -> bool:
        """Remove the message from the subscription; False when it was not there (already
        acked, or dead-lettered meanwhile)."""
        return self.ack_many(subscription, [message_id]) > 0

    def ack_many(self, subscription: str, message_ids: Sequence[str]) -> int:
        """Acknowledge several messages in one write; returns how many were there."""
        self._subscription(subscription)
        if not message_ids:
            return 0
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(_ACK, [(subscription, message_id) for message_id in message_ids])
            return conn.total_changes - before

    def nack(self, subscription: str, message_id: str, error: str) -> None:
        """Record a failed delivery: redeliver after the retry policy's backoff for this
        attempt, or move the message to the dead-letter hold once `attempt >= max_attempts`.
        Unknown message ids are ignored (the message was acked or replayed meanwhile)."""
        sub = self._subscription(subscription)
        policy = self._retry(sub)
        now = self._clock()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT attempt FROM deliveries WHERE subscription = ? AND message_id = ?",
                (subscription, message_id),
            ).fetchone()
            if row is None:
                return
            if row[0] >= policy.max_attempts:
                self._dead_letter(conn, sub, message_id, now, row[0], error)
                return
            conn.execute(
                "UPDATE deliveries SET state = 'pending', due = ?, last_error = ?"
                " WHERE subscription = ? AND message_id = ?",
                (now + policy.backoff(max(1, row[0])), error, subscription, message_id),
            )

    def release(self, subscription: str, message_ids: Sequence[str]) -> int:
        """Give leases back unprocessed (a worker shutting down): the messages are due
        again at once and the attempt is not counted. Returns how many were released."""
        self._subscription(subscription)
        if not message_ids:
            return 0
        where, ids = _id_filter(message_ids)
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE deliveries SET state = 'pending', due = ?, attempt = attempt - 1"
                f" WHERE subscription = ? AND state = 'leased'{where}",
                (self._clock(), subscription, *ids),
            )
        return cursor.rowcount

    def expire_leases(self) -> int:
        """Make every leased message due now (a runner starting on this data dir: whoever held
        those leases died). Unlike `release`, the attempt counts: a message that crashed its
        worker must still reach the dead-letter hold after max attempts."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE deliveries SET state = 'pending', due = ? WHERE state = 'leased'",
                (self._clock(),),
            )
        return cursor.rowcount

    def _dead_letter(
        self,
        conn: sqlite3.Connection,
        sub: Subscription,
        message_id: str,
        now: float,
        attempts: int,
        error: str | None,
    ) -> None:
        """Move one message to the subscription's hold; error None means its last lease
        ran out."""
        if error is None:
            (last,) = conn.execute(
                "SELECT last_error FROM deliveries WHERE subscription = ? AND message_id = ?",
                (sub.name, message_id),
            ).fetchone()
            error = "lease expired on the last attempt" + (f"; before that: {last}" if last else "")
        conn.execute(
            _TO_HOLD,
            {
                "hold": sub.dead_letter_subscription,
                "now": now,
                "attempts": attempts,
                "error": error,
                "sub": sub.name,
                "id": message_id,
            },
        )

    # -- observing -----------------------------------------------------------------------

    def depths(self) -> dict[str, Depth]:
        """Backlog per subscription (every one is listed): ready to pull, leased (in
        flight), waiting out a retry backoff, dead-lettered, and the age in seconds of the
        oldest message not yet acked or dead-lettered (0.0 when there is none)."""
        now = self._clock()
        counts = {row[0]: row[1:] for row in self._read(_DEPTHS, {"now": now})}
        depths: dict[str, Depth] = {}
        for name, sub in self._subscriptions.items():
            ready, leased, backoff, _, oldest = counts.get(name, (0, 0, 0, 0, None))
            dead = counts.get(sub.dead_letter_subscription, (0, 0, 0, 0, None))[3]
            depths[name] = Depth(
                ready=ready,
                leased=leased,
                backoff=backoff,
                dead_lettered=dead,
                oldest_age_s=0.0 if oldest is None else max(0.0, now - oldest),
            )
        return depths

    # -- DeadLetters ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Dead letters waiting, per subscription name (every subscription is listed)."""
        marks = ",".join("?" * len(self._holds))
        rows = self._read(
            "SELECT subscription, COUNT(*) FROM deliveries"
            f" WHERE subscription IN ({marks}) GROUP BY subscription",
            list(self._holds),
        )
        found = dict(rows)
        return {s.name: found.get(s.dead_letter_subscription, 0) for s in self._holds.values()}

    def list(self, subscription: str, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters of one subscription, in the order they were dead-lettered."""
        hold = self._subscription(subscription).dead_letter_subscription
        rows = self._read(
            "SELECT message_id, data, attributes, publish_time, dead_lettered_at, attempt,"
            " last_error FROM deliveries WHERE subscription = ?"
            " ORDER BY dead_lettered_at, seq LIMIT ?",
            (hold, limit),
        )
        return [
            DeadLetter(mid, subscription, data, json.loads(attrs), stamp, _rfc3339(at), n, err)
            for mid, data, attrs, stamp, at, n, err in rows
        ]

    def replay(self, subscription: str, message_ids: Sequence[str] | None = None) -> int:
        """Move dead letters (all when `message_ids` is None) back to the subscription as
        fresh messages (attempt 0, due now). Replaying an id that is no longer in the hold
        does nothing, so replaying twice requeues once. Returns how many moved."""
        hold = self._subscription(subscription).dead_letter_subscription
        where, ids = _id_filter(message_ids)
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE deliveries SET subscription = ?, state = 'pending', due = ?,"
                " attempt = 0, last_error = '', dead_lettered_at = NULL"
                f" WHERE subscription = ?{where}",
                (subscription, self._clock(), hold, *ids),
            )
        return cursor.rowcount

    def purge(self, subscription: str, message_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters for good (all when `message_ids` is None); returns how many."""
        hold = self._subscription(subscription).dead_letter_subscription
        where, ids = _id_filter(message_ids)
        with self._transaction() as conn:
            cursor = conn.execute(
                f"DELETE FROM deliveries WHERE subscription = ?{where}", (hold, *ids)
            )
        return cursor.rowcount


def scaled_capacities(
    scale: float, subscriptions: Sequence[Subscription] = topology.SUBSCRIPTIONS
) -> dict[str, int]:
    """Each subscription's capacity: its function's instances x concurrency times `scale`
    (rounded up, at least 1); no limits at all when `scale` is 0."""
    if scale <= 0:
        return {}
    return {
        s.name: max(1, math.ceil(topology.function(s.function).capacity * scale))
        for s in subscriptions
    }


def _rows(
    targets: Sequence[tuple[str, str]],
    ids: Sequence[str],
    messages: Sequence[OutboundMessage],
    stamp: str,
    now: float,
) -> Iterator[tuple[Any, ...]]:
    """The `_INSERT` rows: one per message per target subscription."""
    for message_id, message in zip(ids, messages, strict=True):
        attributes = json.dumps(dict(message.attributes))
        for sub, state in targets:
            dead_at = now if state == "dead" else None
            yield (sub, message_id, message.data, attributes, stamp, now, state, now, dead_at)


def _check(message: OutboundMessage) -> None:
    if not message.data and not message.attributes:
        raise InvalidInput("a message needs data or attributes", field="data")
    for key, value in message.attributes.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput(f"attribute {key!r} must map str to str", field="attributes")


def _id_filter(message_ids: Sequence[str] | None) -> tuple[str, Sequence[str]]:
    if message_ids is None:
        return "", ()
    return f" AND message_id IN ({','.join('?' * len(message_ids))})", message_ids


def _message_id(n: int) -> str:
    # Zero-padded so that string order is publish order.
    return f"{n:012d}"


def billable_bytes(data: bytes) -> int:
    """What Pub/Sub bills for one publish or one push: the message size, at least 1,000 bytes."""
    return max(PUBSUB_MIN_BYTES, len(data))


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="microseconds")[:-6] + "Z"
