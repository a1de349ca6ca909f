"""DuckDbWarehouse: the Warehouse port as immutable Parquet parts queried with DuckDB.

DuckDB lets only one process open a database file for writing, yet the CLI and the dashboard
must read while the runner writes. So nothing holds a database file open: each append writes one
Parquet part (named by the hash of its event ids, so a redelivered batch rewrites the same part)
and each query opens an in-memory DuckDB over the parts. Reads deduplicate by event_id, exactly
as the BigQuery `events_deduped` view does.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from shared.domain.errors import InvalidInput
from shared.domain.events import COLUMNS
from shared.metering import NULL_METER, OperationMeter
from shared.ports import Document

_COLUMN_TYPES = {
    "event_id": "VARCHAR",
    "event_type": "VARCHAR",
    "occurred_at": "TIMESTAMP",
    "received_at": "TIMESTAMP",
    "is_machine": "BOOLEAN",
    "properties": "JSON",
}
_SCHEMA = ", ".join(f"{c} {_COLUMN_TYPES.get(c, 'VARCHAR')}" for c in COLUMNS)
_JSON_COLUMNS = (
    "{" + ", ".join(f"'{c}': '{_COLUMN_TYPES.get(c, 'VARCHAR')}'" for c in COLUMNS) + "}"
)


class DuckDbWarehouse:
    def __init__(self, root: Path, meter: OperationMeter = NULL_METER) -> None:
        self._parts = Path(root) / "events"
        self._parts.mkdir(parents=True, exist_ok=True)
        self._meter = meter
        self._write_lock = threading.Lock()

    @property
    def parts_glob(self) -> str:
        return str(self._parts / "*.parquet")

    def append(self, events: Sequence[Document]) -> None:
        if not events:
            return
        ids = sorted(str(e["event_id"]) for e in events)
        name = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:40]
        lines = "\n".join(json.dumps(_normalized(e), default=str) for e in events)
        self._meter.count("bigquery.rows", len(events), nbytes=len(lines))
        with self._write_lock, tempfile.TemporaryDirectory(dir=self._parts) as tmp:
            source = Path(tmp) / "rows.jsonl"
            source.write_text(lines)
            staged = Path(tmp) / "part.parquet"
            with duckdb.connect() as db:
                db.execute(
                    f"COPY (SELECT * FROM read_json('{source}', format='newline_delimited', "
                    f"columns={_JSON_COLUMNS})) TO '{staged}' (FORMAT parquet)"
                )
            os.replace(staged, self._parts / f"{name}.parquet")

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with `events_raw` and the deduplicated `events` view."""
        db = duckdb.connect()
        if any(self._parts.glob("*.parquet")):
            db.execute(
                f"CREATE VIEW events_raw AS SELECT * FROM read_parquet('{self.parts_glob}', "
                "union_by_name=true)"
            )
        else:
            db.execute(f"CREATE TABLE events_raw ({_SCHEMA})")
        db.execute(
            "CREATE VIEW events AS SELECT * EXCLUDE (rn) FROM ("
            " SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY received_at) AS rn"
            " FROM events_raw) WHERE rn = 1"
        )
        return db

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Document]:
        if not sql.lstrip().lower().startswith(("select", "with")):
            raise InvalidInput("only SELECT queries are allowed on the warehouse", field="sql")
        with self.connect() as db:
            cursor = db.execute(sql, dict(params or {}))
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def erase_subscriber(self, subscriber_id: str) -> int:
        """Pseudonymize: the rows stay (campaign totals remain true) but lose the person."""
        erased = 0
        pseudonym = "erased-" + hashlib.sha256(subscriber_id.encode()).hexdigest()[:16]
        with self._write_lock:
            for part in sorted(self._parts.glob("*.parquet")):
                erased += self._erase_in_part(part, subscriber_id, pseudonym)
        return erased

    def _erase_in_part(self, part: Path, subscriber_id: str, pseudonym: str) -> int:
        with duckdb.connect() as db:
            (hits,) = db.execute(
                f"SELECT count(*) FROM read_parquet('{part}') WHERE subscriber_id = ?",
                [subscriber_id],
            ).fetchone() or (0,)
            if not hits:
                return 0
            staged = part.with_suffix(".rewrite")
            db.execute(
                f"COPY (SELECT * REPLACE ("
                f" CASE WHEN subscriber_id = $id THEN $alias ELSE subscriber_id END AS subscriber_id,"
                f" CASE WHEN subscriber_id = $id THEN NULL ELSE link_url END AS link_url,"
                f" CASE WHEN subscriber_id = $id THEN '{{}}'::JSON ELSE properties END AS properties)"
                f" FROM read_parquet('{part}')) TO '{staged}' (FORMAT parquet)",
                {"id": subscriber_id, "alias": pseudonym},
            )
            os.replace(staged, part)
            return int(hits)


def _normalized(event: Mapping[str, Any]) -> dict[str, Any]:
    row = {c: event.get(c) for c in COLUMNS}
    if isinstance(row["properties"], str):
        row["properties"] = json.loads(row["properties"] or "{}")
    row["properties"] = row["properties"] or {}
    return row
