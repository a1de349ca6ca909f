"""The pipeline's warehouse SQL is written in BigQuery's dialect and transpiled for DuckDB."""

from __future__ import annotations


def in_dialect(sql: str, dialect: str) -> str:
    """BigQuery SQL as written, or transpiled for DuckDB (sqlglot ships only in local mode, so
    it is imported only there)."""
    if dialect == "bigquery":
        return sql
    from shared.analytics.sql_catalog import transpile

    return transpile(sql, "duckdb")
