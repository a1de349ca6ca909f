"""The warehouse questions campaigns ask: who engaged lately (segments), and who converted in an
A/B test. One query each, over deduplicated events, human events only (`is_machine IS NOT TRUE`:
privacy-proxy prefetches and link scanners do not count).

They read `events_raw` filtered by event type (and campaign) first and deduplicate only what is
left (`first_copies`), rather than the `events` view, which deduplicates every event stored
before any filter can apply: locally that cost DuckDB memory in proportion to all events (49 MB
of 300,000 to find 6,000 clickers), and in BigQuery it scanned past the table's clustering on
(event_type, campaign_id).

Each reads only the partitions it needs: `events_raw` is partitioned by day of `occurred_at`,
and the filter on it stands inside the deduplication, widened by PARTITION_MARGIN so that every
copy of an event in range is seen (copies of one event are at most minutes apart: a resent
chunk); the exact range is applied after. tests/unit/test_warehouse_pruning.py holds every
statement to it.

Literals are written into the SQL rather than bound, because the Warehouse port does not fix a
parameter style (DuckDB binds `$name`, BigQuery `@name`). Every literal is produced here from a
float (timestamps), a constant (event types) or a validated campaign id, never from raw input.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from shared.domain import events as ev
from shared.domain.campaign import CAMPAIGN_ID
from shared.domain.errors import InvalidInput
from shared.domain.segment import EngagementWindow
from shared.ports import Warehouse

DAY = 86_400.0
PARTITION_MARGIN = DAY  # see above
_EVENT_TYPES = {"click": ev.CLICK, "open": ev.OPEN, "clicks": ev.CLICK, "opens": ev.OPEN}


def timestamp_literal(epoch_s: float) -> str:
    """A TIMESTAMP literal both DuckDB and BigQuery read as UTC."""
    moment = datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"TIMESTAMP '{moment}'"


def first_copies(where: str, since: float, until: float) -> str:
    """The events meeting `where` that occurred from `since` to `until` (widened by
    PARTITION_MARGIN: only those partitions are read), one row per event_id (the first
    received, as in the `events` view), as a subquery.
    The same rows as `events` filtered by `where`, when `where` tests only what every copy of
    an event shares: its type and campaign, both part of what its id is derived from."""
    window = (
        f"occurred_at >= {timestamp_literal(since - PARTITION_MARGIN)} "
        f"AND occurred_at <= {timestamp_literal(until + PARTITION_MARGIN)}"
    )
    return (
        f"(SELECT * FROM events_raw WHERE {window} AND {where}\n"
        "  QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY received_at, occurred_at) = 1)"
    )


class EngagementQueries:
    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def engaged(
        self, windows: Iterable[EngagementWindow], at: float
    ) -> dict[EngagementWindow, set[str]]:
        """For each window, the subscribers with a human event of its type in the `days`
        before `at`. One query whatever the number of windows; {} when there are none."""
        ordered = sorted(set(windows), key=lambda w: (w.event_type, w.days))
        if not ordered:
            return {}
        flags = ",\n  ".join(
            f"MAX(CASE WHEN event_type = '{_EVENT_TYPES[w.event_type]}' AND occurred_at >= "
            f"{timestamp_literal(at - w.days * DAY)} THEN 1 ELSE 0 END) AS w{i}"
            for i, w in enumerate(ordered)
        )
        earliest = at - max(w.days for w in ordered) * DAY
        types = ", ".join(sorted({f"'{_EVENT_TYPES[w.event_type]}'" for w in ordered}))
        sql = (
            f"SELECT subscriber_id,\n  {flags}\n"
            f"FROM {first_copies(f'event_type IN ({types})', earliest, at)}\n"
            f"WHERE is_machine IS NOT TRUE\n"
            f"  AND subscriber_id IS NOT NULL\n"
            f"  AND occurred_at >= {timestamp_literal(earliest)}\n"
            f"  AND occurred_at <= {timestamp_literal(at)}\n"
            f"GROUP BY subscriber_id"
        )
        engaged: dict[EngagementWindow, set[str]] = {w: set() for w in ordered}
        for row in self._warehouse.query(sql):
            for i, window in enumerate(ordered):
                if row[f"w{i}"]:
                    engaged[window].add(str(row["subscriber_id"]))
        return engaged

    def converters(self, campaign_id: str, metric: str, until: float, since: float) -> set[str]:
        """Subscribers with a human click (metric "clicks") or open ("opens") on the campaign
        from `since` (when it started: nothing of it happened before) up to `until` (the end of
        the A/B test window)."""
        if not CAMPAIGN_ID.match(campaign_id):
            raise InvalidInput(f"not a campaign id: {campaign_id!r}", field="campaign_id")
        metric_events = f"campaign_id = '{campaign_id}' AND event_type = '{_EVENT_TYPES[metric]}'"
        sql = (
            f"SELECT DISTINCT subscriber_id FROM {first_copies(metric_events, since, until)}\n"
            "WHERE is_machine IS NOT TRUE AND subscriber_id IS NOT NULL\n"
            f"  AND occurred_at <= {timestamp_literal(until)}"
        )
        return {str(row["subscriber_id"]) for row in self._warehouse.query(sql)}
