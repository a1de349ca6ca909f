"""The dashboard SQL in sql/dashboards/*.sql, written once in BigQuery's dialect.

Each file is one parameter-free query over `events_recent` (the deduplicated events of the last
WINDOW_DAYS, defined once in sql/views/events_recent.sql: a BigQuery view made by Terraform, a
DuckDB view in local mode, see `recent_events_view`), so Terraform can make a BigQuery view of
every file. Callers narrow a query with filters on its output columns
(`campaign_id = @campaign_id`); the catalog wraps the file's query in a filtering SELECT, and
for DuckDB (local mode) transpiles the result with sqlglot, BigQuery's `@name` parameters
becoming DuckDB's `$name`. Both dialects therefore run the very same query text.

Results are cached per (query, filters, order) for the life of the process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from shared.domain.errors import ConfigurationError, InvalidInput
from shared.topology import REPO_ROOT

DASHBOARDS_DIR = REPO_ROOT / "sql" / "dashboards"
# The one relation the dashboard files read, and the file that defines it.
RECENT_VIEW = "events_recent"
RECENT_VIEW_FILE = REPO_ROOT / "sql" / "views" / f"{RECENT_VIEW}.sql"
# The days back every dashboard reads (events_recent: events_raw bounded before deduplicating,
# so BigQuery reads only those partitions). A view takes no parameters, so the view's file says
# it itself; tests/unit/test_sql_parity.py holds it to this number.
WINDOW_DAYS = 90
Dialect = Literal["bigquery", "duckdb"]
DIALECTS: tuple[Dialect, ...] = ("bigquery", "duckdb")
Operator = Literal["=", "<", "<=", ">", ">="]

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_OPERATORS = ("=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class Where:
    """`column op @param`: a filter on one output column of a dashboard query."""

    column: str
    op: Operator
    param: str

    def __post_init__(self) -> None:
        for name in (self.column, self.param):
            if not _IDENTIFIER.match(name):
                raise InvalidInput(f"not a plain identifier: {name!r}", field="column")
        if self.op not in _OPERATORS:
            raise InvalidInput(f"unsupported operator {self.op!r}", field="op")


class SqlCatalog:
    """Dashboard queries by name (the file name without .sql), ready for one dialect."""

    def __init__(self, dialect: Dialect, directory: Path = DASHBOARDS_DIR) -> None:
        if dialect not in DIALECTS:
            raise ConfigurationError(f"unknown SQL dialect {dialect!r}; known: {DIALECTS}")
        self.dialect = dialect
        self.directory = Path(directory)

    def names(self) -> list[str]:
        """Every dashboard query, sorted."""
        return sorted(p.stem for p in self.directory.glob("*.sql"))

    def source(self, name: str) -> str:
        """The file's text, as written (BigQuery dialect). ConfigurationError when there is
        no such file: a missing query is a deployment mistake, not bad input."""
        return _read(self.directory, name)

    def query(self, name: str, where: Sequence[Where] = (), order_by: Sequence[str] = ()) -> str:
        """The query `name` narrowed by `where` and sorted by `order_by` (output columns,
        ascending), in this catalog's dialect. Parameters keep their names."""
        return _build(self.directory, name, tuple(where), tuple(order_by), self.dialect)


@cache
def _read(directory: Path, name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ConfigurationError(f"not a dashboard query name: {name!r}")
    path = directory / f"{name}.sql"
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ConfigurationError(f"no dashboard query {path}") from None


@cache
def _build(
    directory: Path,
    name: str,
    where: tuple[Where, ...],
    order_by: tuple[str, ...],
    dialect: Dialect,
) -> str:
    for column in order_by:
        if not _IDENTIFIER.match(column):
            raise ConfigurationError(f"cannot order by {column!r}")
    # BigQuery gets the file verbatim inside the wrapper; DuckDB gets its transpilation.
    lines = ["SELECT * FROM (", _read(directory, name).rstrip().rstrip(";"), ") AS v"]
    if where:
        lines.append("WHERE " + " AND ".join(f"v.{f.column} {f.op} @{f.param}" for f in where))
    if order_by:
        lines.append("ORDER BY " + ", ".join(f"v.{c}" for c in order_by))
    bigquery = "\n".join(lines)
    try:
        return transpile(bigquery, dialect)
    except ConfigurationError as exc:
        raise ConfigurationError(f"sql/dashboards/{name}.sql: {exc}") from exc


@cache
def recent_events_view(dialect: Dialect) -> str:
    """The query of the `events_recent` view (over `events_raw`) in `dialect`."""
    return transpile(RECENT_VIEW_FILE.read_text(encoding="utf-8"), dialect)


def transpile(sql: str, dialect: Dialect) -> str:
    """Any BigQuery-dialect statement in `dialect` (for ad hoc queries such as the CLI's)."""
    if dialect == "bigquery":
        return sql
    # Imported here: BigQuery reads the SQL as written, so the functions (the admin function
    # serves the dashboards in GCP) need no sqlglot; only local mode transpiles.
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        return sqlglot.transpile(sql, read="bigquery", write=dialect)[0]
    except SqlglotError as exc:
        raise ConfigurationError(f"cannot transpile to {dialect}: {exc}") from exc
