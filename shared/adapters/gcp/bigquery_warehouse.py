"""BigQueryWarehouse: the Warehouse port on BigQuery.

- `append` streams rows into the table `events_raw` (tabledata.insertAll via
  `insert_rows_json`) with `insertId` = event_id, so BigQuery drops most redeliveries itself
  (best effort, about a minute); the view `events` removes the rest, and every read goes through
  it, as the DuckDB warehouse's `events` view does locally. Requests are chunked to at most 500
  rows and under 9 MB (the API's limit is 10 MB). `insert_rows_json` REPORTS per-row errors
  instead of raising them: a non-empty list is turned into TransientError (backend, timeout,
  rate reasons) or PermanentFailure (an invalid row; BigQuery then stored none of that request).
- `query` runs read-only standard SQL with the dataset as default, so `events` names the view.
  Parameters are written `$name` as DuckDB does (or `@name`, BigQuery's spelling) and sent as
  named query parameters, never spliced into the text. JSON columns come back as compact JSON
  text, as from DuckDB; TIMESTAMPs as timezone-aware UTC datetimes (DuckDB's are naive UTC).
- `erase_subscriber` pseudonymizes with one DML UPDATE on `events_raw`, mirroring
  shared/adapters/local/duckdb_warehouse.py.

  BigQuery refuses UPDATE/DELETE on rows still in the streaming buffer (rows streamed in about
  the last 30 to 90 minutes): the statement fails as a whole. That failure is a TransientError,
  so an erasure request is retried (and in the end dead-lettered and replayed) until the rows
  have left the buffer. Rows streamed after a successful erasure are not touched by it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Generator, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

from shared.adapters.gcp import clients
from shared.adapters.gcp.errors import TRANSIENT_REASONS, translated
from shared.domain import subscriber_mirror
from shared.domain.errors import InvalidInput, PermanentFailure, TransientError
from shared.domain.events import COLUMNS
from shared.metering import NULL_METER, OperationMeter
from shared.ports import Document
from shared.pricing import BIGQUERY_MIN_QUERY_BYTES
from shared.settings import Settings

RAW_TABLE = "events_raw"
MIRROR_TABLE = subscriber_mirror.TABLE
EVENTS_VIEW = "events"
MAX_ROWS_PER_REQUEST = 500
MAX_BYTES_PER_REQUEST = 9_000_000
_ROW_OVERHEAD = 64  # {"json": ..., "insertId": "..."} around each row
_STREAMING_BUFFER = "streaming buffer"
# A string literal or quoted identifier (skipped), or a $name placeholder (rewritten).
_PLACEHOLDER = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`)|\$([A-Za-z_]\w*)""")

_ERASE = f"""
UPDATE `{RAW_TABLE}`
SET subscriber_id = @pseudonym, link_url = NULL, properties = JSON '{{}}'
WHERE subscriber_id = @subscriber_id
"""
# The mirror keeps nothing of an erased person but the tombstone the erasure appends.
_ERASE_MIRROR = f"""
DELETE FROM `{MIRROR_TABLE}`
WHERE subscriber_id = @subscriber_id AND erased IS NOT TRUE
"""


class BigQueryWarehouse:
    def __init__(
        self,
        client: bigquery.Client,
        dataset: str,
        meter: OperationMeter = NULL_METER,
        retry_deadline_s: float = 60.0,
    ) -> None:
        self._client = client
        self._dataset = f"{client.project}.{dataset}"
        self._meter = meter
        self._retry = DEFAULT_RETRY.with_deadline(retry_deadline_s)
        self._job_retry = DEFAULT_JOB_RETRY.with_deadline(2 * retry_deadline_s)

    @classmethod
    def from_settings(
        cls, settings: Settings, meter: OperationMeter = NULL_METER
    ) -> BigQueryWarehouse:
        """Dataset `settings.bigquery_dataset` of project `settings.gcp_project`."""
        client = clients.bigquery_client(settings)
        return cls(client, settings.bigquery_dataset, meter, settings.gcp_retry_deadline_s)

    @property
    def table(self) -> str:
        return f"{self._dataset}.{RAW_TABLE}"

    # -- append --------------------------------------------------------------------------

    def append(self, events: Sequence[Document]) -> None:
        rows = [_row(e) for e in events]
        for chunk in chunked(rows):
            self._insert(chunk)

    def append_subscribers(self, rows: Sequence[Document]) -> None:
        """Mirror change rows into `subscribers_raw`, `insertId` = change_id."""
        encoded = [_mirror_row(r) for r in rows]
        for chunk in chunked(encoded):
            self._insert(chunk, f"{self._dataset}.{MIRROR_TABLE}", "change_id")

    def _insert(
        self, chunk: list[tuple[dict[str, Any], int]], table: str = "", key: str = "event_id"
    ) -> None:
        rows = [row for row, _size in chunk]
        table = table or self.table
        with translated(f"insert {len(rows)} rows into {table}"):
            errors = self._client.insert_rows_json(
                table, rows, row_ids=[r[key] for r in rows], retry=self._retry
            )
        if errors:
            raise row_errors(errors, rows, key)
        billable = sum(size for _, size in chunk)
        self._meter.count("bigquery.rows", len(rows), nbytes=billable, detail=table.split(".")[-1])

    # -- reads ---------------------------------------------------------------------------

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Document]:
        if not sql.lstrip().lower().startswith(("select", "with")):
            raise InvalidInput("only SELECT queries are allowed on the warehouse", field="sql")
        rows = self._run(native_placeholders(sql, params or {}), params or {}, InvalidInput)
        scanned = int(getattr(rows, "total_bytes_processed", None) or 0)
        billed = max(BIGQUERY_MIN_QUERY_BYTES, scanned) if MIRROR_TABLE in sql else 0
        self._meter.count("bigquery.query", nbytes=billed)
        json_columns = {f.name for f in rows.schema or () if f.field_type == "JSON"}
        return [_document(row, json_columns) for row in rows]

    def query_pages(
        self, sql: str, params: Mapping[str, Any] | None, page_size: int
    ) -> Generator[list[Document], None, None]:
        """One query job; its results read a page at a time (reading results is not billed)."""
        if not sql.lstrip().lower().startswith(("select", "with")):
            raise InvalidInput("only SELECT queries are allowed on the warehouse", field="sql")
        values = params or {}
        rows = self._run(native_placeholders(sql, values), values, InvalidInput, page_size)
        scanned = int(getattr(rows, "total_bytes_processed", None) or 0)
        billed = max(BIGQUERY_MIN_QUERY_BYTES, scanned) if MIRROR_TABLE in sql else 0
        self._meter.count("bigquery.query", nbytes=billed)
        json_columns = {f.name for f in rows.schema or () if f.field_type == "JSON"}
        with translated("read query results"):
            for page in rows.pages:
                yield [_document(row, json_columns) for row in page]

    def erase_subscriber(self, subscriber_id: str) -> int:
        """Pseudonymize: the rows stay (campaign totals remain true) but lose the person."""
        pseudonym = "erased-" + hashlib.sha256(subscriber_id.encode()).hexdigest()[:16]
        params = {"pseudonym": pseudonym, "subscriber_id": subscriber_id}
        affected = 0
        statements = ((_ERASE, params), (_ERASE_MIRROR, {"subscriber_id": subscriber_id}))
        for statement, values in statements:
            try:
                rows = self._run(statement, values, PermanentFailure)
            except PermanentFailure as exc:
                if _STREAMING_BUFFER in str(exc).lower():
                    raise TransientError(
                        f"erasure must wait for the streaming buffer: {exc}"
                    ) from exc
                raise
            if statement is _ERASE:  # the events pseudonymized (mirror rows are removed)
                affected = int(rows.num_dml_affected_rows or 0)
        return affected

    def _run(
        self,
        sql: str,
        params: Mapping[str, Any],
        bad_request: type[InvalidInput | PermanentFailure],
        page_size: int | None = None,
    ) -> Any:
        config = bigquery.QueryJobConfig(
            default_dataset=self._dataset,
            use_legacy_sql=False,
            query_parameters=[query_parameter(k, v) for k, v in params.items()],
        )
        with translated("query", bad_request=bad_request):
            return self._client.query_and_wait(
                sql,
                job_config=config,
                retry=self._retry,
                job_retry=self._job_retry,
                page_size=page_size,
            )


def _document(row: Any, json_columns: set[str]) -> Document:
    """A result row; JSON values as compact JSON text, as DuckDB returns them locally."""
    document = dict(row.items())
    for name in json_columns & document.keys():
        if document[name] is not None:
            document[name] = json.dumps(document[name], separators=(",", ":"))
    return document


def _row(event: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The insertAll row of one event (properties as a JSON string, as the JSON column takes
    them in streaming inserts) and its size in the request."""
    if not event.get("event_id"):
        raise InvalidInput("every event needs an event_id", field="event_id")
    row = {c: event.get(c) for c in COLUMNS}
    props = row["properties"]
    row["properties"] = props if isinstance(props, str) else json.dumps(props or {})
    encoded = json.dumps(row, default=str)
    return json.loads(encoded), len(encoded) + _ROW_OVERHEAD


def _mirror_row(row: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The insertAll row of one mirror change and its size in the request."""
    if not row.get("change_id"):
        raise InvalidInput("every subscriber change needs a change_id", field="change_id")
    encoded = json.dumps({c: row.get(c) for c in subscriber_mirror.COLUMNS}, default=str)
    return json.loads(encoded), len(encoded) + _ROW_OVERHEAD


def chunked(
    rows: Sequence[tuple[dict[str, Any], int]],
) -> Iterator[list[tuple[dict[str, Any], int]]]:
    """Requests of at most MAX_ROWS_PER_REQUEST rows and MAX_BYTES_PER_REQUEST bytes."""
    chunk: list[tuple[dict[str, Any], int]] = []
    size = 0
    for row, row_size in rows:
        if row_size > MAX_BYTES_PER_REQUEST:
            name = row.get("event_id") or row.get("change_id")
            raise PermanentFailure(f"event {name} is {row_size} bytes, too large")
        if chunk and (
            len(chunk) == MAX_ROWS_PER_REQUEST or size + row_size > MAX_BYTES_PER_REQUEST
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append((row, row_size))
        size += row_size
    if chunk:
        yield chunk


def row_errors(
    errors: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], key: str = "event_id"
) -> TransientError | PermanentFailure:
    """The domain error for insertAll's per-row errors: permanent when any row is invalid.
    Rows marked "stopped" were only held back by another row's error, so the message names
    the first row with a real reason."""
    causes = [e for e in errors if any(x.get("reason") != "stopped" for x in e.get("errors", []))]
    reasons = {x.get("reason", "") for e in causes for x in e.get("errors", [])} - {"stopped"}
    first = (causes or list(errors))[0]
    index = int(first.get("index", 0))
    where = rows[index][key] if 0 <= index < len(rows) else f"row {index}"
    detail = "; ".join(x.get("message") or x.get("reason", "") for x in first.get("errors", []))
    message = f"BigQuery refused {len(causes) or len(errors)} row(s), first {where}: {detail}"
    if reasons - TRANSIENT_REASONS:
        return PermanentFailure(message)
    return TransientError(message)


def native_placeholders(sql: str, params: Mapping[str, Any]) -> str:
    """`$name` -> `@name` for the names in `params`, outside string literals and quoted names."""

    def replace(match: re.Match[str]) -> str:
        quoted, name = match.group(1), match.group(2)
        return f"@{name}" if quoted is None and name in params else match.group(0)

    return _PLACEHOLDER.sub(replace, sql)


_SCALAR_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "BOOL"),  # before int: bool is an int
    (int, "INT64"),
    (float, "FLOAT64"),
    (Decimal, "NUMERIC"),
    (dt.datetime, "TIMESTAMP"),  # before date: datetime is a date
    (dt.date, "DATE"),
    (bytes, "BYTES"),
    (str, "STRING"),
)


def _scalar_type(value: Any) -> str:
    for kind, name in _SCALAR_TYPES:
        if isinstance(value, kind):
            return name
    if value is None:
        return "STRING"
    raise InvalidInput(f"unsupported query parameter type {type(value).__name__}", field="params")


def query_parameter(
    name: str, value: Any
) -> bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter:
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        kind = _scalar_type(items[0]) if items else "STRING"
        return bigquery.ArrayQueryParameter(name, kind, items)
    return bigquery.ScalarQueryParameter(name, _scalar_type(value), value)
