"""SqliteDocuments: the DocumentStore port on one SQLite file (JSON documents per collection).

WAL mode lets many threads read while one writes; `update` runs in a BEGIN IMMEDIATE
transaction so read-modify-write is atomic across threads and processes, like a Firestore
transaction. Writers take turns through a WriteLock rather than SQLite's sleeping busy handler.

synchronous=NORMAL: in WAL mode a commit is not fsynced, only checkpoints are; a crash of the
process loses nothing, a power loss at most the last commits, never the database's integrity.
Checkpoints (copying the log into the database, with the fsync) run after a write has let go
of the write lock, every CHECKPOINT_PAGES pages (estimated from the documents' sizes) this
process wrote, not inside the commit that crosses SQLite's own threshold: there every writer
of every process would wait for it (imports of millions spent more time there than anywhere).
Writers that keep appending meanwhile keep the log from being wholly copied, and so from
starting over: when it has grown to LOG_LIMIT_PAGES, one checkpoint runs in turn with them.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from shared.adapters.local.write_lock import WriteLock
from shared.domain.errors import AlreadyExists, InvalidInput, TransientError
from shared.metering import NULL_METER, OperationMeter
from shared.ports import BatchWrite, Document, Filter, check_batch, count_reads

# A rowid table with the key in a unique index, rather than a table clustered on the key (WITHOUT
# ROWID): subscriber ids are hashes, so clustered inserts land on random pages of the whole
# table and each one rewrites a page of it through the log and the checkpoint (4 KB per ~600-byte
# document); here the documents are appended and only the small index entries land at random,
# which halves the CPU and the bytes written of an import of millions.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS documents_key ON documents (collection, id);
"""
# A database made before the rowid table: its documents copied over once, in one transaction.
_MIGRATE_CLUSTERED = """
ALTER TABLE documents RENAME TO documents_clustered;
CREATE TABLE documents (collection TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL);
INSERT INTO documents (collection, id, data)
    SELECT collection, id, data FROM documents_clustered ORDER BY collection, id;
DROP TABLE documents_clustered;
"""

# A checkpoint every ~16 MB of log rather than SQLite's 1,000 pages: a quarter of the fsyncs,
# and a page written again meanwhile is copied once (an import of millions: -40 % checkpoint time).
CHECKPOINT_PAGES = 4000
_PAGE = 4000  # bytes of a document per page written, about (SQLite's pages are 4,096 bytes)
LOG_LIMIT_PAGES = 4 * CHECKPOINT_PAGES  # the log's length (~64 MB) that is checkpointed in turn
_COMMIT_PAGES = 3  # pages a commit writes besides its rows' (the header, overflow, splits)

_OPS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _json_path(field: str) -> str:
    if not field.replace("_", "").replace(".", "").isalnum():
        raise InvalidInput(f"invalid field path {field!r}", field="field")
    return "$." + field


def _where(filters: Sequence[Filter]) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for f in filters:
        path = _json_path(f.field)
        if f.op in _OPS:
            clauses.append(f"json_extract(data, ?) {_OPS[f.op]} ?")
            params += [path, _sql_value(f.value)]
        elif f.op == "array_contains":
            clauses.append("EXISTS (SELECT 1 FROM json_each(data, ?) WHERE value = ?)")
            params += [path, _sql_value(f.value)]
        elif f.op == "in":
            marks = ",".join("?" for _ in f.value)
            clauses.append(f"json_extract(data, ?) IN ({marks})")
            params += [path, *(_sql_value(v) for v in f.value)]
        else:
            raise InvalidInput(f"unsupported filter operator {f.op!r}", field="op")
    return (" AND " + " AND ".join(clauses) if clauses else ""), params


# Types json.dumps refuses stay refused (orjson would write them), so a document stays what the
# stdlib would store; what orjson cannot write (an integer beyond 64 bits, a key that is not a
# string) goes to json.dumps, which writes it or raises as before.
_STDLIB_ONLY = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _text(data: Document) -> str:
    """A document's JSON text: by orjson, a fifth of json.dumps's time (an import of millions
    serializes each). Compact and with UTF-8 rather than \\u escapes, which read back equal.
    Like JSON itself it has no NaN or infinity: such a float is stored as null."""
    try:
        return orjson.dumps(data, option=_STDLIB_ONLY).decode()
    except orjson.JSONEncodeError:
        return json.dumps(data)


def _pages(text: Any) -> int:
    """About how many pages a row of this document takes in the log."""
    return 1 + len(text) // _PAGE if isinstance(text, str) else 1


def _create_schema(conn: sqlite3.Connection) -> None:
    """The schema, in one transaction (an older database's table migrated in the same)."""
    migrate = _MIGRATE_CLUSTERED if _clustered(conn) else ""
    try:
        conn.executescript(f"BEGIN IMMEDIATE; {migrate} {_SCHEMA} COMMIT;")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _clustered(conn: sqlite3.Connection) -> bool:
    """The documents table of an older database, clustered on its key (WITHOUT ROWID)."""
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type='table' AND name='documents'"
    ).fetchone()
    return bool(row) and "WITHOUT ROWID" in row[0].upper()


def _sql_value(value: Any) -> Any:
    # json_extract returns 1/0 for JSON booleans.
    return int(value) if isinstance(value, bool) else value


class SqliteDocuments:
    def __init__(self, path: Path, meter: OperationMeter = NULL_METER) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._meter = meter
        self._write_lock = WriteLock(self._path)
        self._unchecked = 0  # documents written by this process since its last checkpoint
        with self._write_lock.hold():
            _create_schema(self._conn())

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # see _written
            self._local.conn = conn
        return conn

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, params)
        except sqlite3.OperationalError as exc:  # "database is locked" and friends
            raise TransientError(f"document store busy: {exc}") from exc

    def get(self, collection: str, doc_id: str) -> Document | None:
        self._meter.count("firestore.read", detail=collection)
        row = self._execute(
            "SELECT data FROM documents WHERE collection=? AND id=?", (collection, doc_id)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, Document]:
        found: dict[str, Document] = {}
        ids = list(dict.fromkeys(doc_ids))
        self._meter.count("firestore.read", len(ids), detail=collection)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            rows = self._execute(
                f"SELECT id, data FROM documents WHERE collection=? AND id IN ({marks})",
                (collection, *chunk),
            )
            found.update((row[0], json.loads(row[1])) for row in rows)
        return found

    def _write(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        with self._write_lock.hold():
            cursor = self._execute(sql, params)
        self._written(_pages(params[-1]))
        return cursor

    def _written(self, pages: int) -> None:
        """Count pages written; a passive checkpoint (outside the write lock) when enough were."""
        self._unchecked += pages + _COMMIT_PAGES
        if self._unchecked < CHECKPOINT_PAGES:
            return
        self._unchecked = 0
        with contextlib.suppress(sqlite3.OperationalError):  # busy: the next one catches up
            _, log, _ = self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if log >= LOG_LIMIT_PAGES:
                # Other writers kept appending while it ran, so the log never got wholly copied
                # and never started over: once, with them waiting, so the next write restarts it.
                with self._write_lock.hold():
                    self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def create(self, collection: str, doc_id: str, data: Document) -> None:
        self._meter.count("firestore.write", detail=collection)
        try:
            self._write(
                "INSERT INTO documents (collection, id, data) VALUES (?, ?, ?)",
                (collection, doc_id, _text(data)),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"{collection}/{doc_id} exists") from exc

    def put(self, collection: str, doc_id: str, data: Document) -> None:
        self._meter.count("firestore.write", detail=collection)
        self._write(
            "INSERT OR REPLACE INTO documents (collection, id, data) VALUES (?, ?, ?)",
            (collection, doc_id, _text(data)),
        )

    def update(
        self, collection: str, doc_id: str, mutate: Callable[[Document | None], Document | None]
    ) -> Document | None:
        with self._write_lock.hold():
            result, pages = self._update(collection, doc_id, mutate)
        if pages:
            self._written(pages)
        return result

    def _update(
        self, collection: str, doc_id: str, mutate: Callable[[Document | None], Document | None]
    ) -> tuple[Document | None, int]:
        """The document afterwards, and the pages written (0: nothing written)."""
        conn = self._conn()
        self._execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT data FROM documents WHERE collection=? AND id=?", (collection, doc_id)
            ).fetchone()
            current = json.loads(row[0]) if row else None
            self._meter.count("firestore.read", detail=collection)
            new = mutate(current)
            pages = 0
            if new is not None:
                self._meter.count("firestore.write", detail=collection)
                text = _text(new)
                conn.execute(
                    "INSERT OR REPLACE INTO documents (collection, id, data) VALUES (?, ?, ?)",
                    (collection, doc_id, text),
                )
                pages = _pages(text)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return (new if new is not None else current), pages

    def delete(self, collection: str, doc_id: str) -> None:
        self._meter.count("firestore.delete", detail=collection)
        self._write("DELETE FROM documents WHERE collection=? AND id=?", (collection, doc_id))

    def write_batch(self, writes: Sequence[BatchWrite]) -> None:
        check_batch(writes)
        rows = [(w.collection, w.doc_id, _text(w.data)) for w in writes]
        creates = [r for r, w in zip(rows, writes, strict=True) if w.create_only]
        replaces = [r for r, w in zip(rows, writes, strict=True) if not w.create_only]
        with self._write_lock.hold():
            conn = self._conn()
            self._execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO documents (collection, id, data) VALUES (?, ?, ?)", creates
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO documents (collection, id, data) VALUES (?, ?, ?)",
                    replaces,
                )
                conn.execute("COMMIT")
            except BaseException as exc:
                conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise AlreadyExists(f"a document of the batch exists: {exc}") from exc
                raise
        for collection, n in Counter(w.collection for w in writes).items():
            self._meter.count("firestore.write", n, detail=collection)
        self._written(sum(_pages(row[2]) for row in rows))

    def count(self, collection: str, filters: Sequence[Filter] = ()) -> int:
        where, params = _where(filters)
        (matched,) = self._execute(
            f"SELECT COUNT(*) FROM documents WHERE collection=?{where}", (collection, *params)
        ).fetchone()
        self._meter.count("firestore.read", count_reads(matched), detail=collection)
        return int(matched)

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        *,
        limit: int = 500,
        start_after: str | None = None,
    ) -> list[tuple[str, Document]]:
        where, params = _where(filters)
        if start_after is not None:
            where += " AND id > ?"
            params.append(start_after)
        rows = self._execute(
            f"SELECT id, data FROM documents WHERE collection=?{where} ORDER BY id LIMIT ?",
            (collection, *params, limit),
        ).fetchall()
        # Firestore bills a query at least one read even when it returns nothing.
        self._meter.count("firestore.read", max(1, len(rows)), detail=collection)
        return [(row[0], json.loads(row[1])) for row in rows]
