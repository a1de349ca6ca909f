"""SqliteDocuments: the DocumentStore port on one SQLite file (JSON documents per collection).

WAL mode lets many threads read while one writes; `update` runs in a BEGIN IMMEDIATE
transaction so read-modify-write is atomic across threads and processes, like a Firestore
transaction. Writers take turns through a WriteLock rather than SQLite's sleeping busy handler.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared.adapters.local.write_lock import WriteLock
from shared.domain.errors import AlreadyExists, InvalidInput, TransientError
from shared.metering import NULL_METER, OperationMeter
from shared.ports import BatchWrite, Document, Filter, check_batch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
"""

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
        with self._write_lock.hold():
            self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
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
            return self._execute(sql, params)

    def create(self, collection: str, doc_id: str, data: Document) -> None:
        self._meter.count("firestore.write", detail=collection)
        try:
            self._write(
                "INSERT INTO documents (collection, id, data) VALUES (?, ?, ?)",
                (collection, doc_id, json.dumps(data)),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"{collection}/{doc_id} exists") from exc

    def put(self, collection: str, doc_id: str, data: Document) -> None:
        self._meter.count("firestore.write", detail=collection)
        self._write(
            "INSERT OR REPLACE INTO documents (collection, id, data) VALUES (?, ?, ?)",
            (collection, doc_id, json.dumps(data)),
        )

    def update(
        self, collection: str, doc_id: str, mutate: Callable[[Document | None], Document | None]
    ) -> Document | None:
        with self._write_lock.hold():
            return self._update(collection, doc_id, mutate)

    def _update(
        self, collection: str, doc_id: str, mutate: Callable[[Document | None], Document | None]
    ) -> Document | None:
        conn = self._conn()
        self._execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT data FROM documents WHERE collection=? AND id=?", (collection, doc_id)
            ).fetchone()
            current = json.loads(row[0]) if row else None
            self._meter.count("firestore.read", detail=collection)
            new = mutate(current)
            if new is not None:
                self._meter.count("firestore.write", detail=collection)
                conn.execute(
                    "INSERT OR REPLACE INTO documents (collection, id, data) VALUES (?, ?, ?)",
                    (collection, doc_id, json.dumps(new)),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return new if new is not None else current

    def delete(self, collection: str, doc_id: str) -> None:
        self._meter.count("firestore.delete", detail=collection)
        self._write("DELETE FROM documents WHERE collection=? AND id=?", (collection, doc_id))

    def write_batch(self, writes: Sequence[BatchWrite]) -> None:
        check_batch(writes)
        rows = [(w.collection, w.doc_id, json.dumps(w.data)) for w in writes]
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
