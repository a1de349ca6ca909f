"""Warehouse statements prune: every statement sent to BigQuery that reads `events_raw` puts a
lower bound on its partition column (`occurred_at`) in the very SELECT that reads the table, so
before the deduplication (a QUALIFY or window over that SELECT) and before anything else; none
reads the `events` view, which deduplicates every event stored before any filter can apply.
The statements: the pipeline's, collected by running the real SQL builders against a warehouse
that records what it is asked; every SQL file under sql/ (the `events_recent` view in sql/views,
and the dashboards, each a BigQuery view and the very text the dashboards send, which read
events_raw only through `events_recent`); and every view query in terraform/. All are parsed
with sqlglot in BigQuery's dialect."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from shared.analytics.sql_catalog import RECENT_VIEW, RECENT_VIEW_FILE
from shared.domain.segment import EngagementWindow
from shared.services import gdpr
from shared.services.engagement import EngagementQueries
from shared.topology import REPO_ROOT

PARTITION_COLUMN = "occurred_at"
NOW = 1_780_000_000.0
SQL_FILES = sorted((REPO_ROOT / "sql").rglob("*.sql"))
DASHBOARD_FILES = [p for p in SQL_FILES if p.parent.name == "dashboards"]
_HEREDOC = re.compile(r"query\s*=\s*<<-?SQL\n(.*?)\n\s*SQL\n", re.S)
_LOCAL = re.compile(r"\$\{local\.(\w+)\}")
TERRAFORM = REPO_ROOT / "terraform"


def terraform_views() -> dict[str, str]:
    """Every view query written in terraform/*.tf (`query = <<-SQL`), by file and line, with
    each `${local.x}` that names a table replaced by that table's name."""
    texts = {p.name: p.read_text(encoding="utf-8") for p in sorted(TERRAFORM.glob("*.tf"))}
    everything = "\n".join(texts.values())
    views = {}
    for name, text in texts.items():
        for found in _HEREDOC.finditer(text):
            line = text.count("\n", 0, found.start()) + 1
            views[f"{name}:{line}"] = _LOCAL.sub(lambda m: _table_of(m[1], everything), found[1])
    return views


def _table_of(local: str, terraform: str) -> str:
    """The table a `locals` entry names (`events_table = "...${google_bigquery_table.X...}"`)."""
    definition = re.search(rf"^\s*{local}\s*=\s*(.+)$", terraform, re.M)
    table = definition and re.search(r"google_bigquery_table\.(\w+)\.", definition[1])
    if not table:
        raise AssertionError(f"local.{local} in a view query names no table this test knows")
    return table[1]


# The `events` view: bigquery.tf's one view query written in place (the others come from sql/).
(EVENTS_VIEW,) = (q for w, q in terraform_views().items() if w.startswith("bigquery.tf:"))
# Statements that must read every partition, and why.
EXEMPT = {
    gdpr.WAREHOUSE_ROWS_SQL: "GDPR export and erasure: all of one person's events, whenever",
    EVENTS_VIEW: "the `events` view: all time, for GDPR and ad hoc questions only",
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


def _is_partition_column(node: exp.Expression, table: exp.Table) -> bool:
    """`occurred_at`, unqualified or qualified by the events_raw read in question."""
    return (
        isinstance(node, exp.Column)
        and node.name == PARTITION_COLUMN
        and node.table in ("", table.alias_or_name)
    )


def _lower_bound(predicate: exp.Expression, table: exp.Table) -> bool:
    """Whether the predicate keeps only partitions from some day on (an upper bound alone
    still reads every partition before it)."""
    if isinstance(predicate, exp.GT | exp.GTE | exp.EQ | exp.Between):
        return _is_partition_column(predicate.this, table)
    if isinstance(predicate, exp.LT | exp.LTE):  # `x <= occurred_at`
        return _is_partition_column(predicate.expression, table)
    return False


def problems(sql: str) -> list[str]:
    """What keeps a statement from pruning; [] when it prunes."""
    found = []
    tree = sqlglot.parse_one(sql, read="bigquery")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.name == "events" and table.name not in ctes:
            found.append("reads the events view, which deduplicates every event first")
        if table.name != "events_raw":
            continue
        select = table.find_ancestor(exp.Select)
        where = select.args.get("where") if select else None
        if where is None or not any(_lower_bound(p, table) for p in _conjuncts(where.this)):
            found.append(f"reads events_raw with no lower bound on {PARTITION_COLUMN} in its WHERE")
    return found


def test_every_pipeline_statement_prunes_before_deduplicating() -> None:
    statements = pipeline_statements()
    assert len(statements) == 3
    for sql in statements:
        assert problems(sql) == [], sql


def _reads(sql: str) -> set[str]:
    """The tables a statement reads, CTEs left out."""
    tree = sqlglot.parse_one(sql, read="bigquery")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return {t.name for t in tree.find_all(exp.Table)} - ctes


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_sql_file_prunes_before_deduplicating(path: Any) -> None:
    sql = path.read_text(encoding="utf-8")
    assert problems(sql) == [], path.name
    # Each reads events_raw itself (and is held to the bound above) or only the checked view.
    assert _reads(sql) & {"events_raw", RECENT_VIEW}, f"{path.name} reads no events at all"


def test_the_recent_view_bounds_events_raw_itself() -> None:
    """What the dashboards read prunes: the view's own read of events_raw is bounded."""
    sql = RECENT_VIEW_FILE.read_text(encoding="utf-8")
    assert _reads(sql) == {"events_raw"} and problems(sql) == []
    assert "PARTITION BY event_id" in sql


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_dashboard_reads_events_only_through_the_recent_view(path: Any) -> None:
    assert _reads(path.read_text(encoding="utf-8")) == {RECENT_VIEW}, path.name


@pytest.mark.parametrize("where", sorted(terraform_views()))
def test_every_terraform_view_prunes_or_is_exempt(where: str) -> None:
    sql = terraform_views()[where]
    assert sql in EXEMPT or problems(sql) == [], f"{where}: {problems(sql)}"


def test_the_sql_files_and_views_are_found() -> None:
    assert len(DASHBOARD_FILES) >= 9 and RECENT_VIEW_FILE in SQL_FILES
    assert set(SQL_FILES) == {*DASHBOARD_FILES, RECENT_VIEW_FILE}
    assert "PARTITION BY event_id" in EVENTS_VIEW and "FROM events_raw" in EVENTS_VIEW


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
    upper_only = f"SELECT * FROM events_raw WHERE occurred_at <= CURRENT_TIMESTAMP() {dedupe}"
    other_table = ("SELECT * FROM events_raw AS e JOIN t ON t.id = e.event_id "
                   f"WHERE t.occurred_at >= TIMESTAMP '2026-01-01' {dedupe}")  # fmt: skip
    assert problems(upper_only) and problems(other_table)
    window = "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 91 DAY)"
    view_style = (
        "WITH recent AS (SELECT * EXCEPT (_copy) FROM (SELECT *, ROW_NUMBER() OVER "
        "(PARTITION BY event_id ORDER BY received_at) AS _copy FROM events_raw AS r "
        f"WHERE r.occurred_at >= {window}) WHERE _copy = 1) SELECT * FROM recent"
    )
    unbounded_view_style = view_style.replace(f"WHERE r.occurred_at >= {window}", "")
    assert problems(view_style) == [] and problems(unbounded_view_style)
    assert problems("WITH events AS (SELECT 1 AS x) SELECT x FROM events") == []


@pytest.mark.parametrize("sql", sorted(EXEMPT))
def test_the_exempt_statements_are_the_ones_that_need_all_time(sql: str) -> None:
    assert problems(sql), f"{EXEMPT[sql]}: it prunes now, so drop the exemption"


def test_audience_statements_prune_events_and_the_recheck_prunes_the_mirror() -> None:
    """The audience SQL (shared/services/audience_sql.py): its engagement conditions read
    `events_raw` bounded on `occurred_at` before deduplicating; the send stage's re-check reads
    `subscribers_raw` bounded on `changed_at`. The snapshot and count read every mirror row on
    purpose: a subscriber's latest row may be of any age."""
    from shared.domain.segment import Segment
    from shared.services.audience_sql import count_query, members_query, recheck_query

    segment = Segment.parse({"any": [{"clicked_within_days": 30}, {"opened_within_days": 7}]})
    for query in (members_query(segment, NOW), count_query(segment, NOW)):
        tree = sqlglot.parse_one(query.sql, read="bigquery")
        assert len([t for t in tree.find_all(exp.Table) if t.name == "events_raw"]) == 2
        assert problems(query.sql) == []
    recheck = sqlglot.parse_one(recheck_query(segment, NOW, NOW - 60).sql, read="bigquery")
    (mirror,) = [t for t in recheck.find_all(exp.Table) if t.name == "subscribers_raw"]
    select = mirror.find_ancestor(exp.Select)
    where = select.args.get("where") if select else None
    assert where is not None
    assert any(
        isinstance(p, exp.GT | exp.GTE) and isinstance(p.this, exp.Column)
        and p.this.name == "changed_at"
        for p in _conjuncts(where.this)
    )  # fmt: skip
    assert problems(recheck.sql("bigquery")) == []
