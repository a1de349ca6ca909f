"""Local adapters on embedded parts: SQLite, the filesystem, DuckDB."""
