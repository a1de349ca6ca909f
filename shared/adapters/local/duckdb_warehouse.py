"""DuckDbWarehouse: the Warehouse port as immutable parts on disk, queried with DuckDB.

DuckDB lets only one process open a database file for writing, yet the CLI and the dashboard
must read while the runner writes. So nothing holds a database file open: each append writes one
newline-delimited JSON part (named by the hash of its event ids, so a redelivered batch rewrites
the same part; writing it costs about a millisecond), and once `LANDING_PARTS` of them have
gathered they are merged into one Parquet part: by the local runner's warehouse process while
one runs (see `compactor_lock`), otherwise by the append that found them. Queries read both
kinds through an in-memory DuckDB and deduplicate by event_id, exactly as BigQuery's `events`
view does over `events_raw`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.adapters.local import warehouse_service
from shared.adapters.local.duckdb_subscriber_mirror import DuckDbSubscriberMirror
from shared.adapters.local.write_lock import directory_lock
from shared.analytics.sql_catalog import RECENT_VIEW, recent_events_view
from shared.domain.errors import InvalidInput
from shared.domain.events import COLUMNS
from shared.domain.subscriber_mirror import TABLE as MIRROR_TABLE
from shared.metering import NULL_METER, OperationMeter
from shared.ports import Document
from shared.pricing import BIGQUERY_MIN_QUERY_BYTES, BIGQUERY_MIN_ROW_BYTES

if TYPE_CHECKING:
    import duckdb

_COLUMN_TYPES = {
    "event_id": "VARCHAR",
    "event_type": "VARCHAR",
    "occurred_at": "TIMESTAMP",
    "received_at": "TIMESTAMP",
    "is_machine": "BOOLEAN",
    "properties": "JSON",
}
_SCHEMA = ", ".join(f"{c} {_COLUMN_TYPES.get(c, 'VARCHAR')}" for c in COLUMNS)
_PSEUDONYMIZE = (
    "CASE WHEN subscriber_id = $id THEN $alias ELSE subscriber_id END AS subscriber_id, "
    "CASE WHEN subscriber_id = $id THEN NULL ELSE link_url END AS link_url, "
    "CASE WHEN subscriber_id = $id THEN '{}'::JSON ELSE properties END AS properties"
)
# Which copy of an event reads see: the first received (as the BigQuery `events` view says).
_COPY_NUMBER = "row_number() OVER (PARTITION BY event_id ORDER BY received_at, occurred_at)"
_ROW_ENCODER = json.JSONEncoder(default=str)  # json.dumps(row, default=str), built once
# DuckDB work beside the pipeline's functions in their process (merging landing parts, the
# pipeline's streamed queries, erasure) is small; one thread halves its peak memory.
_BESIDE_PIPELINE: dict[str, str | bool | int | float | list[str]] = {
    "threads": 1,
    "preserve_insertion_order": False,
}
_JSON_COLUMNS = (
    "{" + ", ".join(f"'{c}': '{_COLUMN_TYPES.get(c, 'VARCHAR')}'" for c in COLUMNS) + "}"
)


class DuckDbWarehouse:
    def __init__(
        self,
        root: Path,
        meter: OperationMeter = NULL_METER,
        snapshot_reads: bool = True,
        via_service: bool = False,
    ) -> None:
        self._parts = Path(root) / "events"
        self._parts.mkdir(parents=True, exist_ok=True)
        self._meter = meter
        self._write_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._memory: duckdb.DuckDBPyConnection | None = None
        self._loaded: dict[str, tuple[int, int]] = {}
        self._snapshot_reads = snapshot_reads
        self._via_service = via_service
        self._mirror = DuckDbSubscriberMirror(Path(root))

    @property
    def parts_glob(self) -> str:
        return str(self._parts / "*.parquet")

    def append(self, events: Sequence[Document]) -> None:
        if not events:
            return
        ids = sorted(str(e["event_id"]) for e in events)
        name = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:40]
        rows = [_ROW_ENCODER.encode(_normalized(e)) for e in events]
        # BigQuery streaming bills each row's size with a 1 KB minimum.
        billable = sum(max(BIGQUERY_MIN_ROW_BYTES, len(r)) for r in rows)
        self._meter.count("bigquery.rows", len(events), nbytes=billable, detail="events_raw")
        staged = self._parts / f".{name}.{os.getpid()}.{threading.get_ident()}.landing"
        staged.write_text("\n".join(rows) + "\n")
        os.replace(staged, self._parts / f"{name}{LANDING_SUFFIX}")
        if self.landing_count() >= LANDING_PARTS and not self.compactor_running():
            self.merge_landing()

    def append_subscribers(self, rows: Sequence[Document]) -> None:
        """Subscriber mirror change rows -> `subscribers_raw` (see DuckDbSubscriberMirror)."""
        if not rows:
            return
        encoded = [_ROW_ENCODER.encode(r) for r in rows]
        billable = sum(max(BIGQUERY_MIN_ROW_BYTES, len(r)) for r in encoded)
        self._meter.count("bigquery.rows", len(rows), nbytes=billable)
        self._mirror.append(rows)

    def landing_count(self) -> int:
        return sum(1 for _ in self._parts.glob(f"*{LANDING_SUFFIX}"))

    def compactor_running(self) -> bool:
        """Whether a compactor process holds `compactor_lock` (and so does the merging)."""
        with self.compactor_lock() as held:
            return not held

    @contextmanager
    def compactor_lock(self) -> Iterator[bool]:
        """Held by the local warehouse process (shared/runner/warehouse_process.py) while it runs:
        appends then leave merging to it. Released when its process ends, however it ends.
        Never waits: yields whether it got the lock."""
        with open(self._parts / COMPACTOR_LOCK, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def merge_landing(self) -> None:
        """Landing parts -> one Parquet part (then removed). Readers see old, both or new:
        every read deduplicates, so each is right."""
        with self._write_lock, self._exclusive():
            landing = sorted(self._parts.glob(f"*{LANDING_SUFFIX}"))
            if len(landing) < 2:
                return
            name = hashlib.sha256("\n".join(p.name for p in landing).encode()).hexdigest()[:40]
            staged = self._parts / f".{name}.merging"
            with _duckdb().connect(config=_BESIDE_PIPELINE) as db:
                db.execute(
                    f"COPY (SELECT * FROM {_landing_relation([str(p) for p in landing])})"
                    f" TO '{staged}' (FORMAT parquet, ROW_GROUP_SIZE {MERGE_ROW_GROUP})"
                )
            os.replace(staged, self._parts / f"{name}.parquet")
            for part in landing:
                part.unlink(missing_ok=True)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with `events_raw`, the deduplicated `events` view and the
        dashboards' `events_recent` view."""
        db = _duckdb().connect(config={} if self._snapshot_reads else _BESIDE_PIPELINE)
        db.execute("SET TimeZone = 'UTC'")
        parts = sorted(str(p) for p in _parts_in(self._parts))
        if parts:
            db.execute(f"CREATE VIEW events_raw AS SELECT * FROM {_relation(parts)}")
        else:
            db.execute(f"CREATE TABLE events_raw ({_SCHEMA})")
        db.execute(
            "CREATE VIEW events AS SELECT * EXCLUDE (rn) FROM ("
            f" SELECT *, {_COPY_NUMBER} AS rn"
            " FROM events_raw) WHERE rn = 1"
        )
        _create_recent_view(db)
        self._mirror.register(db)
        return db

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Document]:
        """Rows of a read-only query over `events`. With `snapshot_reads` (dashboards) from the
        snapshot (see `_snapshot`), so dashboards over a million events answer in well under a
        second; without (the pipeline's few queries: A/B decisions, segments, soft bounces)
        streamed from the parts, so no process holds the events, as none does with BigQuery.
        With `via_service` (the pipeline's), answered by the query service when one runs."""
        _only_select(sql)
        mirror = MIRROR_TABLE in sql
        if not mirror:
            self._meter.count("bigquery.query")  # one query job in GCP
        if self._via_service:
            rows = warehouse_service.ask(self._parts, sql, params)
            if rows is not None:
                if mirror:
                    self._count_served_mirror_query()
                return rows
        for attempt in range(1, _READ_ATTEMPTS + 1):
            try:
                with self._reader(fresh=mirror) as db:
                    if mirror:
                        self._count_mirror_query(db)
                    cursor = db.execute(sql, dict(params or {}))
                    names = [d[0] for d in cursor.description or ()]
                    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            except _duckdb().IOException:  # a part merged away after it was listed: list again
                if attempt == _READ_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def query_pages(
        self, sql: str, params: Mapping[str, Any] | None, page_size: int
    ) -> Generator[list[Document], None, None]:
        """`query`'s rows, `page_size` at a time. With `via_service`, streamed from the query
        service when one runs (the query's working memory, a window over the whole subscriber
        mirror for a snapshot, stays in the warehouse's process, as it stays in BigQuery);
        else from a connection of this process's own."""
        _only_select(sql)
        if self._via_service:
            pages = warehouse_service.ask_pages(self._parts, sql, params, page_size)
            if pages is not None:
                if MIRROR_TABLE in sql:
                    self._count_served_mirror_query()
                else:
                    self._meter.count("bigquery.query")
                yield from pages
                return
        yield from self._pages_in_process(sql, params, page_size)

    def _pages_in_process(
        self, sql: str, params: Mapping[str, Any] | None, page_size: int
    ) -> Generator[list[Document], None, None]:
        with self.connect() as db:
            if MIRROR_TABLE in sql:
                self._count_mirror_query(db)
            else:
                self._meter.count("bigquery.query")
            cursor = db.execute(sql, dict(params or {}))
            names = [d[0] for d in cursor.description or ()]
            while rows := cursor.fetchmany(page_size):
                yield [dict(zip(names, row, strict=True)) for row in rows]

    def serve_queries(self) -> None:
        """Answer the `via_service` warehouses' queries, whole or paged, from this process
        (see warehouse_service.py), in a daemon thread."""
        warehouse_service.serve(self._parts, self.query, self._pages_in_process)

    def _reader(self, fresh: bool = False) -> duckdb.DuckDBPyConnection:
        """A connection to query and then close: a cursor on the snapshot, or a fresh one
        (always for the subscriber mirror, which the snapshot does not hold)."""
        return self._snapshot().cursor() if self._snapshot_reads and not fresh else self.connect()

    def _count_served_mirror_query(self) -> None:
        """A mirror query the service answered: its process meters nothing, so the asker bills
        the parts read (without DuckDB, which this process need not load)."""
        scanned = max(BIGQUERY_MIN_QUERY_BYTES, self._mirror.stored_bytes())
        self._meter.count("bigquery.query", nbytes=scanned)

    def _count_mirror_query(self, db: duckdb.DuckDBPyConnection) -> None:
        """A query over the subscriber mirror, billed as BigQuery would: every byte of the
        table's columns (it has no partition filter to prune with), at least 10 MB."""
        scanned = max(BIGQUERY_MIN_QUERY_BYTES, self._mirror.billed_bytes(db))
        self._meter.count("bigquery.query", nbytes=scanned)

    def _snapshot(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB whose `events` TABLE holds the deduplicated parts, kept per
        process. Deduplicating a million rows per query costs seconds; so the snapshot loads
        only parts it has not seen (events already loaded win over later copies), and is
        rebuilt when a part it loaded changed or vanished (erasure, compaction). Its `events_raw`
        is a view of that table: the dashboards read `events_recent`, which deduplicates the window
        of `events_raw` they show (so BigQuery prunes partitions) and here finds each event once
        already."""
        with self._snapshot_lock:
            parts = _part_signatures(self._parts)
            seen = self._loaded
            if self._memory is None or any(parts.get(n) != sig for n, sig in seen.items()):
                self._memory, seen = self._fresh_snapshot(), {}
            new = sorted(n for n in parts if n not in seen)
            if new:
                self._load_parts(self._memory, [str(self._parts / n) for n in new])
            self._loaded = {n: parts[n] for n in (*seen, *new)}
            return self._memory

    def _fresh_snapshot(self) -> duckdb.DuckDBPyConnection:
        if self._memory is not None:
            self._memory.close()
        db = _duckdb().connect()
        db.execute("SET TimeZone = 'UTC'")
        db.execute(f"CREATE TABLE events ({_SCHEMA})")
        db.execute("CREATE VIEW events_raw AS SELECT * FROM events")
        _create_recent_view(db)
        return db

    @staticmethod
    def _load_parts(db: duckdb.DuckDBPyConnection, files: list[str]) -> None:
        db.execute(
            f"INSERT INTO events BY NAME SELECT * FROM {_relation(files)}"
            " WHERE event_id NOT IN (SELECT event_id FROM events)"
            f" QUALIFY {_COPY_NUMBER} = 1"
        )

    def compact(self) -> int:
        """Merge every part into one deduplicated part; returns how many parts it replaced.

        The merged part is in place (atomic rename) before the old parts are removed, so a
        concurrent reader sees the old parts, both (deduplicated away), or the new one. Runs
        under the warehouse lock that erasure takes, so no erasure is undone."""
        with self._write_lock, self._exclusive():
            parts = sorted(_parts_in(self._parts))
            if len(parts) < 2:
                return 0
            name = hashlib.sha256("\n".join(p.name for p in parts).encode()).hexdigest()[:40]
            staged = self._parts / f".{name}.compacting"
            with self.connect() as db:
                db.execute(f"COPY (SELECT * FROM events) TO '{staged}' (FORMAT parquet)")
            os.replace(staged, self._parts / f"{name}.parquet")
            for part in parts:
                if part.name != f"{name}.parquet":
                    part.unlink(missing_ok=True)
            return len(parts)

    def _exclusive(self) -> AbstractContextManager[None]:
        """A lock across processes (the runner, the CLI) for rewriting parts."""
        return directory_lock(self._parts)

    def erase_subscriber(self, subscriber_id: str) -> int:
        """Pseudonymize: the rows stay (campaign totals remain true) but lose the person; their
        subscriber mirror rows go (but a tombstone). Returns the events pseudonymized."""
        self._mirror.erase(subscriber_id)  # the mirror's rows of the person are removed
        erased = 0
        pseudonym = "erased-" + hashlib.sha256(subscriber_id.encode()).hexdigest()[:16]
        self.merge_landing()  # rewrite Parquet only: landing parts are merged into one first
        with self._write_lock, self._exclusive():
            for part in sorted(self._parts.glob("*.parquet")):
                erased += self._erase_in_part(part, subscriber_id, pseudonym)
        return erased

    def _erase_in_part(self, part: Path, subscriber_id: str, pseudonym: str) -> int:
        with _duckdb().connect(config=_BESIDE_PIPELINE) as db:
            (hits,) = db.execute(
                f"SELECT count(*) FROM read_parquet('{part}') WHERE subscriber_id = ?",
                [subscriber_id],
            ).fetchone() or (0,)
            if not hits:
                return 0
            staged = part.with_suffix(".rewrite")
            db.execute(
                f"COPY (SELECT * REPLACE ({_PSEUDONYMIZE}) FROM read_parquet('{part}'))"
                f" TO '{staged}' (FORMAT parquet)",
                {"id": subscriber_id, "alias": pseudonym},
            )
            os.replace(staged, part)
            return int(hits)


def _only_select(sql: str) -> None:
    if not sql.lstrip().lower().startswith(("select", "with")):
        raise InvalidInput("only SELECT queries are allowed on the warehouse", field="sql")


def _create_recent_view(db: duckdb.DuckDBPyConnection) -> None:
    """`events_recent`, the relation every dashboard reads, from its one definition
    (sql/views/events_recent.sql, which Terraform deploys to BigQuery too)."""
    db.execute(f"CREATE VIEW {RECENT_VIEW} AS {recent_events_view('duckdb')}")


def _duckdb() -> Any:
    """The duckdb module, imported on first use: a process that only appends (the warehouse
    function, when a compactor merges) never maps its ~25 MB of code."""
    import duckdb

    return duckdb


COMPACTOR_LOCK = ".compactor.lock"
LANDING_SUFFIX = ".jsonl"
LANDING_PARTS = 64  # merged into one Parquet part once this many have gathered
# Rows the Parquet writer buffers before it writes them out. Its default (122,880) buffers a
# whole merge: +10 MB at 64 parts of a campaign's send events, against +4 MB at 2,048 rows.
MERGE_ROW_GROUP = 2048
# A read lists the parts, then reads them; a merge in between removes landing parts it listed.
# The merged part is in place by then, so listing again gives the same events.
_READ_ATTEMPTS = 5


def _parts_in(folder: Path) -> list[Path]:
    return [*folder.glob("*.parquet"), *folder.glob(f"*{LANDING_SUFFIX}")]


def _landing_relation(files: list[str]) -> str:
    return f"read_json({files!r}, format='newline_delimited', columns={_JSON_COLUMNS})"


def _relation(files: list[str]) -> str:
    """The rows of Parquet and landing parts together (as one SQL relation)."""
    parquet = [f for f in files if f.endswith(".parquet")]
    landing = [f for f in files if f.endswith(LANDING_SUFFIX)]
    selects = []
    if parquet:
        selects.append(f"SELECT * FROM read_parquet({parquet!r}, union_by_name=true)")
    if landing:
        selects.append(f"SELECT * FROM {_landing_relation(landing)}")
    return "(" + " UNION ALL BY NAME ".join(selects) + ")"


def _part_signatures(folder: Path) -> dict[str, tuple[int, int]]:
    """Each part's name -> (modification time, size): what tells a rewritten part apart."""
    signatures = {}
    for part in _parts_in(folder):
        try:
            stat = part.stat()
        except FileNotFoundError:  # compacted away meanwhile
            continue
        signatures[part.name] = (stat.st_mtime_ns, stat.st_size)
    return signatures


def _normalized(event: Mapping[str, Any]) -> dict[str, Any]:
    row = {c: event.get(c) for c in COLUMNS}
    if isinstance(row["properties"], str):
        row["properties"] = json.loads(row["properties"] or "{}")
    row["properties"] = row["properties"] or {}
    return row
