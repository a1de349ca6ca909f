"""DuckDbSubscriberMirror: the local `subscribers_raw` table (shared/domain/subscriber_mirror.py)
as immutable parts on disk, as the DuckDB warehouse keeps events: each append writes one
newline-delimited JSON part named by the hash of its change ids (a redelivered batch rewrites the
same part), and once LANDING_PARTS have gathered they are merged into one Parquet part. Queries
see every part through the `subscribers_raw` view `register` creates on a connection.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from shared.adapters.local.write_lock import directory_lock
from shared.domain.subscriber_mirror import COLUMN_TYPES, TABLE
from shared.ports import Document

_DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "STRING[]": "VARCHAR[]",
    "TIMESTAMP": "TIMESTAMP",
    "BOOL": "BOOLEAN",
    "FLOAT64": "DOUBLE",
}
_TYPES = {name: _DUCKDB_TYPES[kind] for name, kind in COLUMN_TYPES.items()}
_SCHEMA = ", ".join(f"{name} {kind}" for name, kind in _TYPES.items())
_JSON_COLUMNS = "{" + ", ".join(f"'{n}': '{k}'" for n, k in _TYPES.items()) + "}"
LANDING_SUFFIX = ".jsonl"
LANDING_PARTS = 64
_ENCODER = json.JSONEncoder(default=str)
# What BigQuery bills per value of a type when a query reads it (STRING: 2 bytes + its text).
_BIGQUERY_BYTES = {
    "VARCHAR": "2 + strlen(coalesce({c}, ''))",
    "VARCHAR[]": "coalesce(list_sum(list_transform(coalesce({c}, []), lambda x: 2 + strlen(x))),"
    " 0)",
    "TIMESTAMP": "8",
    "DOUBLE": "8",
    "BOOLEAN": "1",
}


class DuckDbSubscriberMirror:
    def __init__(self, root: Path) -> None:
        self._parts = Path(root) / "subscribers"
        self._parts.mkdir(parents=True, exist_ok=True)

    def append(self, rows: Sequence[Document]) -> None:
        if not rows:
            return
        ids = sorted(str(r["change_id"]) for r in rows)
        name = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:40]
        text = "\n".join(_ENCODER.encode({c: r.get(c) for c in _TYPES}) for r in rows) + "\n"
        staged = self._parts / f".{name}.{os.getpid()}.landing"
        staged.write_text(text)
        os.replace(staged, self._parts / f"{name}{LANDING_SUFFIX}")
        if sum(1 for _ in self._parts.glob(f"*{LANDING_SUFFIX}")) >= LANDING_PARTS:
            self.merge_landing()

    def register(self, db: Any) -> None:
        """Create the `subscribers_raw` view (a table, when there are no rows yet) on `db`."""
        relation = self.relation()
        if relation is None:
            db.execute(f"CREATE TABLE {TABLE} ({_SCHEMA})")
        else:
            db.execute(f"CREATE VIEW {TABLE} AS SELECT * FROM {relation}")

    def relation(self) -> str | None:
        """Every part as one SQL relation; None when there is none."""
        parquet = sorted(str(p) for p in self._parts.glob("*.parquet"))
        landing = sorted(str(p) for p in self._parts.glob(f"*{LANDING_SUFFIX}"))
        selects = []
        if parquet:
            selects.append(f"SELECT * FROM read_parquet({parquet!r}, union_by_name=true)")
        if landing:
            selects.append(
                f"SELECT * FROM read_json({landing!r}, format='newline_delimited', "
                f"columns={_JSON_COLUMNS})"
            )
        return "(" + " UNION ALL BY NAME ".join(selects) + ")" if selects else None

    def billed_bytes(self, db: Any) -> int:
        """What a BigQuery query reading every column of the table would be billed for."""
        sizes = " + ".join(_BIGQUERY_BYTES[kind].format(c=name) for name, kind in _TYPES.items())
        (total,) = db.execute(f"SELECT coalesce(sum({sizes}), 0) FROM {TABLE}").fetchone()
        return int(total)

    def stored_bytes(self) -> int:
        """The parts' size on disk (Parquet compresses: less than BigQuery would bill)."""
        return sum(p.stat().st_size for p in self._parts.glob("*.*") if p.is_file())

    def merge_landing(self) -> None:
        import duckdb

        with self._exclusive():
            landing = sorted(self._parts.glob(f"*{LANDING_SUFFIX}"))
            if len(landing) < 2:
                return
            name = hashlib.sha256("\n".join(p.name for p in landing).encode()).hexdigest()[:40]
            staged = self._parts / f".{name}.merging"
            files = [str(p) for p in landing]
            with duckdb.connect(config={"threads": 1}) as db:
                db.execute(
                    f"COPY (SELECT * FROM read_json({files!r}, format='newline_delimited', "
                    f"columns={_JSON_COLUMNS})) TO '{staged}' (FORMAT parquet)"
                )
            os.replace(staged, self._parts / f"{name}.parquet")
            for part in landing:
                part.unlink(missing_ok=True)

    def erase(self, subscriber_id: str) -> int:
        """Remove every row of the person but tombstones; returns how many."""
        import duckdb

        self.merge_landing()
        removed = 0
        with self._exclusive():
            for part in sorted(self._parts.glob(f"*{LANDING_SUFFIX}")) + sorted(
                self._parts.glob("*.parquet")
            ):
                with duckdb.connect(config={"threads": 1}) as db:
                    removed += _erase_in_part(db, part, subscriber_id)
        return removed

    def _exclusive(self) -> AbstractContextManager[None]:
        """A lock across processes (the runner, the CLI) for rewriting parts."""
        return directory_lock(self._parts)


def _erase_in_part(db: Any, part: Path, subscriber_id: str) -> int:
    source = (
        f"read_parquet('{part}')"
        if part.suffix == ".parquet"
        else f"read_json('{part}', format='newline_delimited', columns={_JSON_COLUMNS})"
    )
    keep = "NOT (subscriber_id = $id AND erased IS NOT TRUE)"
    (hits,) = db.execute(
        f"SELECT count(*) FROM {source} WHERE NOT ({keep})", {"id": subscriber_id}
    ).fetchone()
    if not hits:
        return 0
    staged = part.with_name(f".{part.name}.rewrite")
    db.execute(
        f"COPY (SELECT * FROM {source} WHERE {keep}) TO '{staged}' (FORMAT parquet)",
        {"id": subscriber_id},
    )
    os.replace(staged, part.with_suffix(".parquet"))
    if part.suffix != ".parquet":
        part.unlink(missing_ok=True)
    return int(hits)
