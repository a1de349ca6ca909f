"""The SQLite document store checkpoints its write-ahead log after a write has let go of the
write lock, not inside the commit that crosses SQLite's threshold (where every writer of
every process would wait for the copy and its fsync), and the log still stays bounded."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

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


def _write_many(path: Path, k: int) -> None:
    store = SqliteDocuments(path)
    doc = {"text": "z" * 700}
    for batch in range(80):
        store.write_batch([BatchWrite("c", f"{k}-{batch}-{i}", doc) for i in range(500)])


def test_the_log_starts_over_while_two_processes_keep_writing(tmp_path):
    """Each checkpoints while the other appends, so neither copies the whole log."""
    path = tmp_path / "documents.sqlite3"
    keeper = SqliteDocuments(path)
    keeper.get("c", "-")  # a connection open throughout: the log file is kept when they close
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(path, k)) for k in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [w.exitcode for w in writers] == [0, 0]
    # 80,000 documents, some 80,000 pages through the log: without starting over, ~330 MB.
    limit = sqlite_documents.LOG_LIMIT_PAGES + 2 * sqlite_documents.CHECKPOINT_PAGES
    assert (tmp_path / "documents.sqlite3-wal").stat().st_size < limit * 4096 * 1.5
