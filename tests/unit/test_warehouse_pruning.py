"""Warehouse statements prune: every statement the pipeline sends to BigQuery that reads
`events_raw` constrains its partition column (`occurred_at`) in the very SELECT that reads the
table, so before the deduplication (a QUALIFY or window over that SELECT) and before anything
else; none reads the `events` view, which deduplicates every event stored before any filter
can apply. Statements are collected by running the real SQL builders against a warehouse that
records what it is asked, and parsed with sqlglot in BigQuery's dialect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from shared.domain.segment import EngagementWindow
from shared.services import gdpr
from shared.services.engagement import EngagementQueries

PARTITION_COLUMN = "occurred_at"
NOW = 1_780_000_000.0
# Statements that must read every partition, and why.
EXEMPT = {
    gdpr.WAREHOUSE_ROWS_SQL: "GDPR export and erasure: all of one person's events, whenever",
}


class RecordingWarehouse:
    """The Warehouse port, answering nothing and remembering every statement."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def append(self, events: Sequence[Mapping[str, Any]]) -> None:
        return None

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        self.statements.append(sql)
        return []

    def erase_subscriber(self, subscriber_id: str) -> int:
        return 0


def pipeline_statements() -> list[str]:
    warehouse = RecordingWarehouse()
    engagement = EngagementQueries(warehouse)
    engagement.engaged([EngagementWindow("click", 30), EngagementWindow("open", 7)], NOW)
    engagement.converters("spring-2026", "clicks", NOW, NOW - 3 * 86400)
    engagement.converters("spring-2026", "opens", NOW, NOW - 3 * 86400)
    return warehouse.statements


def _conjuncts(condition: exp.Expression) -> list[exp.Expression]:
    if isinstance(condition, exp.And):
        return [*_conjuncts(condition.left), *_conjuncts(condition.right)]
    if isinstance(condition, exp.Paren):
        return _conjuncts(condition.this)
    return [condition]


def _bounds_partition(predicate: exp.Expression) -> bool:
    comparisons = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.Between)
    if not isinstance(predicate, comparisons):
        return False
    column = predicate.this
    return isinstance(column, exp.Column) and column.name == PARTITION_COLUMN


def problems(sql: str) -> list[str]:
    """What keeps a statement from pruning; [] when it prunes."""
    found = []
    tree = sqlglot.parse_one(sql, read="bigquery")
    for table in tree.find_all(exp.Table):
        if table.name == "events":
            found.append("reads the events view, which deduplicates every event first")
        if table.name != "events_raw":
            continue
        select = table.find_ancestor(exp.Select)
        where = select.args.get("where") if select else None
        if where is None or not any(_bounds_partition(p) for p in _conjuncts(where.this)):
            found.append(f"reads events_raw without bounding {PARTITION_COLUMN} in its WHERE")
    return found


def test_every_pipeline_statement_prunes_before_deduplicating() -> None:
    statements = pipeline_statements()
    assert len(statements) == 3
    for sql in statements:
        assert problems(sql) == [], sql


def test_the_check_itself_catches_what_does_not_prune() -> None:
    dedupe = "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY received_at) = 1"
    late = (f"SELECT * FROM (SELECT * FROM events_raw WHERE event_type = 'click' {dedupe}) "
            "WHERE occurred_at >= TIMESTAMP '2026-01-01'")  # fmt: skip
    either = ("SELECT * FROM events_raw WHERE event_type = 'a' OR occurred_at >= "
              f"TIMESTAMP '2026-01-01' {dedupe}")  # fmt: skip
    assert problems(late) and problems(either)
    assert problems("SELECT count(*) FROM events WHERE occurred_at >= TIMESTAMP '2026-01-01'")
    pruned = f"SELECT * FROM events_raw WHERE occurred_at >= TIMESTAMP '2026-01-01' {dedupe}"
    assert problems(pruned) == []


@pytest.mark.parametrize("sql", sorted(EXEMPT))
def test_the_exempt_statements_are_the_ones_that_need_all_time(sql: str) -> None:
    assert problems(sql), f"{EXEMPT[sql]}: it prunes now, so drop the exemption"
