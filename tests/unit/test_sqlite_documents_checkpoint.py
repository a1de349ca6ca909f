"""The SQLite document store checkpoints its write-ahead log after a write has let go of the
write lock, not inside the commit that crosses SQLite's threshold (where every writer of
every process would wait for the copy and its fsync), and the log still stays bounded."""

from __future__ import annotations

import sqlite3

from shared.adapters.local import sqlite_documents
from shared.adapters.local.sqlite_documents import SqliteDocuments
from shared.ports import BatchWrite


def test_no_checkpoint_inside_a_commit_and_the_log_stays_bounded(tmp_path):
    store = SqliteDocuments(tmp_path / "documents.sqlite3")
    assert store._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    doc = {"text": "x" * 2000}  # about a page each
    for batch in range(20):  # 10,000 documents, ~20,000 pages through the log
        store.write_batch([BatchWrite("c", f"{batch}-{i}", doc) for i in range(500)])
    wal = tmp_path / "documents.sqlite3-wal"
    assert wal.stat().st_size < sqlite_documents.CHECKPOINT_PAGES * 3 * 4096  # a batch's slack
    with sqlite3.connect(tmp_path / "documents.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM documents").fetchone()[0] == 10_000


def test_single_writes_are_counted_toward_the_checkpoint_too(tmp_path):
    store = SqliteDocuments(tmp_path / "documents.sqlite3")
    for i in range(sqlite_documents.CHECKPOINT_PAGES):
        store.put("c", str(i), {"text": "y" * 3000})
    wal = tmp_path / "documents.sqlite3-wal"
    assert wal.stat().st_size < sqlite_documents.CHECKPOINT_PAGES * 4 * 4096
