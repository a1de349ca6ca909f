"""Every sql/dashboards/*.sql file gives the same rows on a real GoogleSQL engine as on DuckDB.

BigQuery cannot be reached here, so the BigQuery side is Google's ZetaSQL reference
implementation (tests/bigquery_engine.py): it parses, analyzes and evaluates the file's text
itself, in BigQuery's external product mode, with no sqlglot or DuckDB in the path. DuckDB runs
the same file through sqlglot (SqlCatalog("duckdb")), as local mode does. Both get the same
fixture rows: those of test_sql_parity.py, and those of test_triggers_report.py (the only ones
that give trigger_performance.sql something to count). Each file reads the `events_recent` view
(sql/views/events_recent.sql), which deduplicates the days shown; ZetaSQL gets the view's text
as a WITH clause, so both engines get the raw rows, redeliveries and all; the `events` view
query from terraform/bigquery.tf (all time, for GDPR) is checked on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from bigquery_engine import Table, ZetaSqlEngine, zetasql_engine
from unit.test_sql_parity import deduped
from unit.test_sql_parity import fixture_rows as dashboard_rows
from unit.test_triggers_report import fixture_rows as trigger_rows

from shared.adapters.local.duckdb_warehouse import DuckDbWarehouse
from shared.analytics.sql_catalog import RECENT_VIEW, SqlCatalog, recent_events_view
from shared.topology import REPO_ROOT

Row = dict[str, Any]
BIGQUERY = SqlCatalog("bigquery")
DUCKDB = SqlCatalog("duckdb")
SCHEMA = {c["name"]: c["type"] for c in json.loads(
    (REPO_ROOT / "terraform" / "schemas" / "events.json").read_text())}  # fmt: skip
FIXTURES: dict[str, Callable[[], list[Row]]] = {"dashboards": dashboard_rows,
                                                "triggers": trigger_rows}  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.emulator]


def events_view_sql() -> str:
    """The `events` view's query exactly as Terraform deploys it, reading table events_raw."""
    terraform = (REPO_ROOT / "terraform" / "bigquery.tf").read_text()
    found = re.search(r'table_id\s*=\s*"events".*?query\s*=\s*<<-SQL\n(.*?)\n\s*SQL\n', terraform,
                      re.S)  # fmt: skip
    assert found, "terraform/bigquery.tf has no `events` view query"
    return found.group(1).replace("${local.events_table}", "events_raw")


def with_recent_view(sql: str) -> str:
    """A dashboard query as BigQuery runs it: reading the deployed `events_recent` view."""
    return f"WITH {RECENT_VIEW} AS (\n{recent_events_view('bigquery')}\n)\n{sql}"


@pytest.fixture(scope="module")
def engine() -> Iterator[ZetaSqlEngine]:
    with zetasql_engine() as running:  # installs on first use; fails (never skips) if it cannot
        yield running


@pytest.fixture(scope="module")
def datasets(
    engine: ZetaSqlEngine, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Table, DuckDbWarehouse]]:
    """Per fixture: ZetaSQL's `events_raw` table of the rows (redeliveries and all), and a
    DuckDB warehouse of the same rows."""
    out = {}
    for name, build in FIXTURES.items():
        rows = build()
        warehouse = DuckDbWarehouse(Path(tmp_path_factory.mktemp(f"bq-{name}")))
        warehouse.append([r | {k: r[k].isoformat() for k in ("occurred_at", "received_at")}
                          for r in rows])  # fmt: skip
        out[name] = (Table(SCHEMA, rows), warehouse)
    return out


def normalized(value: Any) -> Any:
    """One representation per value, so only a different number or instant can differ.

    - TIMESTAMP: BigQuery's is an absolute instant; ZetaSQL hands it back as an aware UTC
      datetime, DuckDB (session zone UTC) as a naive one. Compared as naive UTC, the instant
      itself must match.
    Nothing else is converted: INT64, FLOAT64, BOOL, STRING and DATE arrive as int, float,
    bool, str and date from both engines, and any other type is a difference.
    FLOAT64 is compared exactly: every rate is one IEEE division of the same two integers.
    """
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return value


def canonical(rows: list[Row]) -> list[tuple]:
    """Rows as sorted (column, value) tuples, in a stable order: a dashboard query has no
    ORDER BY (callers add one), so row order is not part of its result."""
    return sorted((tuple(sorted((k, normalized(v)) for k, v in r.items())) for r in rows), key=repr)


def test_the_deployed_events_view_keeps_the_first_copy_of_each_event(
    engine: ZetaSqlEngine, datasets: dict[str, tuple[Table, DuckDbWarehouse]]
) -> None:
    raw, _ = datasets["dashboards"]
    events = engine.query(events_view_sql(), {"events_raw": raw})
    expected = deduped(list(raw.rows))
    assert len(events) == len(expected) < len(raw.rows)
    assert canonical(events) == canonical(expected)


def test_the_engine_rejects_what_bigquery_rejects(engine: ZetaSqlEngine) -> None:
    """A DuckDB-ism (date part first) fails as on BigQuery: the engine is no lenient parser."""
    table = {"events": Table(SCHEMA, [])}
    with pytest.raises(grpc.RpcError, match="valid date part name is required"):
        engine.query("SELECT DATE_TRUNC('day', occurred_at) FROM events", table)


@pytest.mark.parametrize("name", BIGQUERY.names())
def test_zetasql_and_duckdb_give_the_same_rows(
    name: str, engine: ZetaSqlEngine, datasets: dict[str, tuple[Table, DuckDbWarehouse]]
) -> None:
    seen = 0
    for raw, warehouse in datasets.values():
        on_zetasql = engine.query(with_recent_view(BIGQUERY.query(name)), {"events_raw": raw})
        on_duckdb = warehouse.query(DUCKDB.query(name))
        assert canonical(on_zetasql) == canonical(on_duckdb)
        seen += len(on_zetasql)
    assert seen, f"no fixture gives {name} anything to compute"
