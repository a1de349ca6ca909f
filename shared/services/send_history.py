"""A subscriber's recent sends and soft bounces, read from the warehouse for the bounce policy.

Why the warehouse and not a counter document: counting sends in Firestore would cost one write
per recipient ($1.80 per million emails) for a policy that only matters on the rare soft bounce.
The warehouse already holds every `send` and `bounce` row, so the policy reads it once per soft
bounce: one small query, no write per send. It is eventually consistent, so the caller counts
the bounce it is processing itself (SoftBouncePolicy does). On BigQuery the query prunes by the
`occurred_at` partition (the lookback) and the `event_type` clustering.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.domain.feedback import HistoryRow
from shared.ports import Warehouse

# BigQuery dialect; transpiled for DuckDB in local mode. Soft bounces carry reason 'soft'.
RECENT_SQL = """
SELECT event_type, message_id, event_id, occurred_at
FROM events
WHERE subscriber_id = @subscriber_id
  AND occurred_at >= @since
  AND (event_type = 'send' OR (event_type = 'bounce' AND reason = 'soft'))
ORDER BY occurred_at DESC, event_id
LIMIT {limit}
"""
ROWS_PER_SEND = 10  # room for several bounce rows per send (temporary failures repeat)


class SendHistory:
    def __init__(self, warehouse: Warehouse, dialect: str, lookback_days: int) -> None:
        self._warehouse = warehouse
        self._dialect = dialect
        self._lookback_s = lookback_days * 86400

    def recent(self, subscriber_id: str, sends: int, now: float) -> list[HistoryRow]:
        """Up to about `sends` recent sends of the subscriber and the soft bounces among them,
        newest first. Raises TransientError when the warehouse cannot answer (retry later)."""
        sql = in_dialect(RECENT_SQL.format(limit=int(sends) * ROWS_PER_SEND), self._dialect)
        params = {"subscriber_id": subscriber_id, "since": _timestamp(now - self._lookback_s)}
        return [_row(r) for r in self._warehouse.query(sql, params)]


def in_dialect(sql: str, dialect: str) -> str:
    """BigQuery SQL as written, or transpiled for DuckDB (sqlglot ships only in local mode, so
    it is imported only there)."""
    if dialect == "bigquery":
        return sql
    from shared.analytics.sql_catalog import transpile

    return transpile(sql, "duckdb")


def _row(row: dict[str, Any]) -> HistoryRow:
    message_id = row.get("message_id")
    return HistoryRow(
        event_type=str(row["event_type"]),
        message_key=str(message_id or row["event_id"]),
        occurred_at=_epoch(row["occurred_at"]),
        message_known=bool(message_id),
    )


def _timestamp(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC).timestamp()
