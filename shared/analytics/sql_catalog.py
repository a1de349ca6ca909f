"""The dashboard SQL in sql/dashboards/*.sql, written once in BigQuery's dialect.

Each file is one parameter-free query over the deduplicated `events` relation, so Terraform can
make a BigQuery view of every file. Callers narrow a query with filters on its output columns
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
# The days back every dashboard file reads (its `recent_events`: events_raw bounded before
# deduplicating, so BigQuery reads only those partitions). A view takes no parameters, so the
# files say it themselves; tests/unit/test_sql_parity.py holds them to this number.
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
