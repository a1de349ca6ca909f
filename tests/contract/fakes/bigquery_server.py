"""FakeBigQuery: the BigQuery REST API (v2) calls google-cloud-bigquery makes for streaming
inserts (tabledata.insertAll) and queries (jobs.query), over an in-memory DuckDB.

The dataset holds the table `events_raw` with the production schema
(terraform/schemas/events.json), the view `events`, written in BigQuery SQL as production
defines it, and the view `events_recent` the dashboards read, from its one definition
(sql/views/events_recent.sql, as terraform/bigquery.tf makes it); both run through sqlglot's
BigQuery -> DuckDB translation, like every query the fake receives. Inserts are checked as
BigQuery checks them (known columns, REQUIRED fields, JSON strings for JSON columns, a unique
insertId per row, <= 500 rows / 10 MB per request) and answered with insertErrors for bad rows.
Every row is kept, even a repeated insertId (BigQuery's own dedup is best effort), so reads
prove that the `events` view deduplicates.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal
from typing import Any

import duckdb
import sqlglot
from contract.fakes.recording_server import RecordingServer, Reply, error_reply, expect

from shared.topology import REPO_ROOT

SCHEMA = json.loads((REPO_ROOT / "terraform" / "schemas" / "events.json").read_text())
RECENT_VIEW_SQL = (REPO_ROOT / "sql" / "views" / "events_recent.sql").read_text()
_DUCK_TYPES = {"STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMPTZ", "BOOL": "BOOLEAN", "JSON": "JSON"}
_BQ_TYPES = {
    "VARCHAR": "STRING",
    "BIGINT": "INTEGER",
    "INTEGER": "INTEGER",
    "HUGEINT": "INTEGER",
    "DOUBLE": "FLOAT",
    "BOOLEAN": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "DATE": "DATE",
    "JSON": "JSON",
}
EVENTS_VIEW_SQL = """
SELECT * EXCEPT (_copy) FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY received_at, occurred_at) AS _copy
  FROM events_raw
) WHERE _copy = 1
"""
_INSERT_KEYS = {"rows", "skipInvalidRows", "ignoreUnknownValues", "kind", "traceId"}
_QUERY_KEYS = {
    "query", "useLegacySql", "defaultDataset", "queryParameters", "parameterMode",
    "formatOptions", "requestId", "location", "maxResults", "timeoutMs", "jobCreationMode",
    "dryRun", "useQueryCache", "labels", "maximumBytesBilled",
}  # fmt: skip
_MAX_REQUEST_BYTES = 10 * 1024 * 1024


class FakeBigQuery(RecordingServer):
    def __init__(self, project: str, dataset: str) -> None:
        super().__init__()
        self.project = project
        self.dataset = dataset
        self.streaming_buffer = False  # True: DML on events_raw fails as in BigQuery
        self._reject: list[tuple[int, str]] = []
        self._jobs = itertools.count(1)
        self.db = duckdb.connect()
        columns = ", ".join(f"{c['name']} {_DUCK_TYPES.get(c['type'], c['type'])}" for c in SCHEMA)
        self.db.execute(f"CREATE TABLE events_raw ({columns})")
        self.db.execute("CREATE VIEW events AS " + _duckdb(EVENTS_VIEW_SQL))
        self.db.execute("CREATE VIEW events_recent AS " + _duckdb(RECENT_VIEW_SQL))
        base = r"/bigquery/v2/projects/(?P<project>[^/]+)"
        table = base + r"/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)"
        self.route("POST", table + "/insertAll", self._insert_all)
        self.route("POST", base + "/queries", self._query)

    def reject_next_rows(self, reason: str, index: int = 0) -> None:
        """The next insertAll answers a per-row error `reason` for row `index` and stores
        nothing (BigQuery marks the other rows "stopped")."""
        with self.lock:
            self._reject.append((index, reason))

    def raw_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            cursor = self.db.execute("SELECT * FROM events_raw ORDER BY event_id")
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -- insertAll -----------------------------------------------------------------------

    def _insert_all(self, body: Any, project: str, dataset: str, table: str) -> Reply:
        expect((project, dataset) == (self.project, self.dataset), f"{project}.{dataset}")
        if table != "events_raw":
            return error_reply(404, f"Not found: Table {project}:{dataset}.{table}", "notFound")
        expect(isinstance(body, dict) and set(body) <= _INSERT_KEYS, f"insertAll keys {body}")
        expect(len(json.dumps(body)) < _MAX_REQUEST_BYTES, "request over 10 MB")
        rows = body.get("rows")
        expect(isinstance(rows, list) and 0 < len(rows) <= 500, "1 to 500 rows per request")
        expect(all(isinstance(r, dict) and set(r) == {"json", "insertId"} for r in rows),
               "each row is {json, insertId}")  # fmt: skip
        ids = [r["insertId"] for r in rows]
        expect(all(isinstance(i, str) and i for i in ids), "insertId must be a non-empty string")
        expect(len(set(ids)) == len(ids), f"insertIds repeat within one request: {ids}")
        errors = self._row_errors([r["json"] for r in rows])
        if errors:
            return 200, {"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": errors}
        with self.lock:
            for row in rows:
                self._store(row["json"])
        return 200, {"kind": "bigquery#tableDataInsertAllResponse"}

    def _row_errors(self, rows: list[Any]) -> list[dict[str, Any]]:
        with self.lock:
            injected = self._reject.pop(0) if self._reject else None
        bad = {i: problem for i, r in enumerate(rows) if (problem := _invalid(r))}
        if injected is not None:
            bad[injected[0]] = injected[1]
        if not bad:
            return []
        return [
            {"index": i, "errors": [{"reason": _reason(bad[i]), "message": bad[i]}]}
            if i in bad
            else {"index": i, "errors": [{"reason": "stopped", "message": ""}]}
            for i in range(len(rows))
        ]

    def _store(self, row: dict[str, Any]) -> None:
        names = [c["name"] for c in SCHEMA]
        values = [row.get(n) for n in names]
        marks = ", ".join("?" for _ in names)
        self.db.execute(f"INSERT INTO events_raw ({', '.join(names)}) VALUES ({marks})", values)

    # -- jobs.query ----------------------------------------------------------------------

    def _query(self, body: Any, project: str) -> Reply:
        expect(project == self.project, f"project {project}")
        expect(isinstance(body, dict) and set(body) <= _QUERY_KEYS, f"query keys {body}")
        expect(body.get("useLegacySql") is False, "useLegacySql must be false")
        expect(body.get("defaultDataset") == {"projectId": self.project,
                                              "datasetId": self.dataset},
               f"defaultDataset {body.get('defaultDataset')}")  # fmt: skip
        params = _parameters(body)
        sql = body["query"]
        is_dml = sql.lstrip().upper().startswith(("UPDATE", "DELETE", "INSERT", "MERGE"))
        if is_dml and self.streaming_buffer:
            return error_reply(400, f"UPDATE or DELETE statement over table {self.project}."
                               f"{self.dataset}.events_raw would affect rows in the streaming "
                               "buffer, which is not supported", "invalidQuery")  # fmt: skip
        try:
            with self.lock:
                cursor = self.db.execute(_duckdb(sql), params)
                rows = cursor.fetchall()
                description = cursor.description or []
        except (duckdb.Error, sqlglot.errors.SqlglotError) as exc:
            return error_reply(400, str(exc), "invalidQuery")
        job = {"projectId": self.project, "jobId": f"job_{next(self._jobs)}", "location": "EU"}
        reply: dict[str, Any] = {"kind": "bigquery#queryResponse", "jobComplete": True,
                                 "jobReference": job}  # fmt: skip
        if is_dml:
            reply.update(numDmlAffectedRows=str(rows[0][0] if rows else 0), totalRows="0",
                         schema={"fields": []})  # fmt: skip
            return 200, reply
        fields = [{"name": d[0], "type": _BQ_TYPES.get(str(d[1]), "STRING"),
                   "mode": "NULLABLE"} for d in description]  # fmt: skip
        reply.update(schema={"fields": fields}, totalRows=str(len(rows)),
                     rows=[{"f": [{"v": _cell(v)} for v in row]} for row in rows])  # fmt: skip
        return 200, reply


def _duckdb(sql: str) -> str:
    return sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]


def _invalid(row: Any) -> str:
    """BigQuery's reason to refuse `row`, or ""."""
    if not isinstance(row, dict):
        return "row is not an object"
    known = {c["name"]: c for c in SCHEMA}
    unknown = set(row) - set(known)
    if unknown:
        return f"no such field: {sorted(unknown)[0]}."
    for name, column in known.items():
        value = row.get(name)
        if column.get("mode") == "REQUIRED" and value is None:
            return f"Missing required field: {name}."
        if value is not None and column["type"] == "JSON":
            if not isinstance(value, str):
                return f"{name}: JSON values are sent as strings in streaming inserts"
            try:
                json.loads(value)
            except ValueError:
                return f"{name}: invalid JSON"
        if value is not None and column["type"] == "BOOL" and not isinstance(value, bool):
            return f"{name}: not a boolean"
    return ""


def _reason(problem: str) -> str:
    return problem if problem in ("backendError", "internalError", "timeout") else "invalid"


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    given = body.get("queryParameters", [])
    if given:
        expect(body.get("parameterMode") == "NAMED", "parameterMode must be NAMED")
    params = {}
    for p in given:
        expect(set(p) == {"name", "parameterType", "parameterValue"}, f"parameter {p}")
        params[p["name"]] = _parameter_value(p["parameterType"], p["parameterValue"])
    return params


def _parameter_value(kind: dict[str, Any], value: dict[str, Any]) -> Any:
    if kind["type"] == "ARRAY":
        expect("arrayType" in kind, "an ARRAY parameter needs arrayType")
        return [_scalar(kind["arrayType"]["type"], v.get("value"))
                for v in value.get("arrayValues", [])]  # fmt: skip
    return _scalar(kind["type"], value.get("value"))


def _scalar(kind: str, raw: Any) -> Any:
    expect(raw is None or isinstance(raw, str), f"parameter values are strings: {raw!r}")
    if raw is None:
        return None
    converters = {
        "STRING": str,
        "INT64": int,
        "FLOAT64": float,
        "NUMERIC": Decimal,
        "BOOL": lambda v: {"true": True, "false": False}[v.lower()],
        "TIMESTAMP": lambda v: dt.datetime.fromisoformat(v.replace("Z", "+00:00")),
        "DATE": dt.date.fromisoformat,
    }
    expect(kind in converters, f"parameter type {kind}")
    return converters[kind](raw)


def _cell(value: Any) -> Any:
    """A value as BigQuery's REST API writes it (formatOptions.useInt64Timestamp)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return str(int(moment.timestamp() * 1_000_000))
    return str(value)
