"""The SQLite document store keeps documents in a rowid table with the key in a unique index
(imports of millions append instead of rewriting random pages), migrates an older database's
key-clustered table, and writes documents by orjson that read back as json.dumps's would."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from shared.adapters.local.sqlite_documents import SqliteDocuments
from shared.domain.errors import AlreadyExists
from shared.ports import BatchWrite

DOCS = [
    {"email": "ann@example.com", "lists": ["a", "b"], "tracking": True, "confirmed_at": None},
    {"name": "Åse Ørn", "city": "Zürich", "emoji": "✉️", "quote": 'say "hi"\n\t\\'},
    {"floats": [0.1, 1e-7, 1.7976931348623157e308, -0.0, 1767000000.123456], "zero": 0.0},
    {"ints": [0, -1, 2**63 - 1, -(2**63)], "nested": {"a": {"b": [{"c": [1, [2, {}]]}]}}},
    {"big": 2**70},  # beyond 64 bits: orjson refuses, json.dumps writes it
    {"keys": {1: "one", 2.5: "two and a half", False: "no", None: "none"}},  # not strings
    {},
]


@pytest.mark.parametrize("doc", DOCS, ids=range(len(DOCS)))
def test_documents_read_back_as_json_would_store_them(tmp_path, doc) -> None:
    store = SqliteDocuments(tmp_path / "documents.sqlite3")
    expected = json.loads(json.dumps(doc))
    store.put("c", "put", doc)
    store.write_batch([BatchWrite("c", "batch", doc, create_only=True)])
    store.update("c", "update", lambda _: doc)
    for doc_id in ("put", "batch", "update"):
        assert store.get("c", doc_id) == expected
    assert store.get_many("c", ["put", "batch"]) == {"put": expected, "batch": expected}


def test_types_json_refuses_stay_refused(tmp_path) -> None:
    import dataclasses
    import datetime

    @dataclasses.dataclass
    class Point:
        x: int

    store = SqliteDocuments(tmp_path / "documents.sqlite3")
    for value in (datetime.datetime(2026, 1, 1), datetime.date(2026, 1, 1), Point(1), {1, 2}):
        with pytest.raises(TypeError):
            store.put("c", "x", {"value": value})
    assert store.get("c", "x") is None


def test_a_non_finite_float_is_stored_as_null_as_json_has_none(tmp_path) -> None:
    store = SqliteDocuments(tmp_path / "documents.sqlite3")
    store.put("c", "x", {"n": math.nan, "i": math.inf})
    assert store.get("c", "x") == {"n": None, "i": None}


def test_documents_are_a_rowid_table_keyed_by_a_unique_index(tmp_path) -> None:
    path = tmp_path / "documents.sqlite3"
    store = SqliteDocuments(path)
    store.write_batch([BatchWrite("c", f"id{i}", {"i": i}, create_only=True) for i in range(3)])
    with sqlite3.connect(path) as db:
        table = db.execute("SELECT sql FROM sqlite_master WHERE name='documents'").fetchone()[0]
        assert "WITHOUT ROWID" not in table.upper()
        plan = " ".join(
            str(row[-1])
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT data FROM documents WHERE collection='c' AND id='id1'"
            )
        )
        assert "documents_key" in plan
    with pytest.raises(AlreadyExists):
        store.write_batch([BatchWrite("c", "id1", {"again": True}, create_only=True)])
    store.put("c", "id1", {"replaced": True})  # replace keeps one document per key
    assert store.get("c", "id1") == {"replaced": True}
    assert [doc_id for doc_id, _ in store.query("c")] == ["id0", "id1", "id2"]


def test_an_older_key_clustered_database_is_migrated_with_its_documents(tmp_path) -> None:
    path = tmp_path / "documents.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE documents (collection TEXT NOT NULL, id TEXT NOT NULL, "
            "data TEXT NOT NULL, PRIMARY KEY (collection, id)) WITHOUT ROWID"
        )
        db.executemany(
            "INSERT INTO documents VALUES (?, ?, ?)",
            [("subscribers", f"s{i}", json.dumps({"i": i, "é": "ü"})) for i in range(50)]
            + [("imports", "job", json.dumps({"status": "done"}))],
        )
    store = SqliteDocuments(path)
    assert store.get("subscribers", "s7") == {"i": 7, "é": "ü"}
    assert store.get("imports", "job") == {"status": "done"}
    assert len(store.query("subscribers", limit=100)) == 50
    with pytest.raises(AlreadyExists):
        store.create("subscribers", "s7", {})
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT sql FROM sqlite_master WHERE type='table'")]
        assert len(tables) == 1 and "WITHOUT ROWID" not in tables[0].upper()
    SqliteDocuments(path)  # opened again: nothing left to migrate, nothing lost
    assert len(SqliteDocuments(path).query("subscribers", limit=100)) == 50
