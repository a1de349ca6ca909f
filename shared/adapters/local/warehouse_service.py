"""The local warehouse's query service: the pipeline's own queries (A/B decisions, engagement
segments, soft-bounce history) are answered by one process, as BigQuery answers them away from
the function that asks.

Without it, DuckDB (~25 MB of code, ~30 MB more once it runs a query) loaded into whichever
function process happened to ask first, and which one that was decided a campaign's peak
memory. The runner's warehouse process serves queries on an abstract Unix socket named after
the warehouse folder (no file, no path-length limit); the connection is authenticated with a
key only the data directory's owner can read. When nothing answers (tests, the CLI, before the
service is up, after a crash) `ask` returns None and the caller queries in-process, so nothing
depends on the service running.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from shared.domain.errors import InvalidInput
from shared.ports import Document

log = logging.getLogger("mailpipe.warehouse_service")

KEY_FILE = ".queries.key"
Query = Callable[[str, Mapping[str, Any] | None], list[Document]]


def address(folder: Path) -> str:
    """The abstract socket address of the service for the warehouse in `folder`."""
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:24]
    return f"\0mailpipe-warehouse-{digest}"


def ask(folder: Path, sql: str, params: Mapping[str, Any] | None) -> list[Document] | None:
    """The rows of `sql` from the service, or None when no service answers (also when it went
    away mid-question: the caller then asks DuckDB itself)."""
    try:
        key = (folder / KEY_FILE).read_bytes()
        with Client(address(folder), "AF_UNIX", authkey=key) as connection:
            connection.send((sql, dict(params or {})))
            kind, value = connection.recv()
    except (OSError, EOFError, AuthenticationError):
        return None
    if kind == "rows":
        return list(value)
    if kind == "invalid":
        raise InvalidInput(value, field="sql")
    raise RuntimeError(f"the warehouse query service failed: {value}")


def serve(folder: Path, query: Query) -> threading.Thread:
    """Answer queries with `query` from a daemon thread (one more thread per connection)."""
    key = secrets.token_bytes(32)
    listener = Listener(address(folder), "AF_UNIX", authkey=key)  # claims the address first
    _write_key(folder / KEY_FILE, key)
    thread = threading.Thread(
        target=_accept_forever, args=(listener, query), name="warehouse-queries", daemon=True
    )
    thread.start()
    return thread


def _write_key(path: Path, key: bytes) -> None:
    staged = path.with_name(f"{path.name}.{os.getpid()}")
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    os.replace(staged, path)


def _accept_forever(listener: Listener, query: Query) -> None:
    while True:
        try:
            connection = listener.accept()
        except (OSError, EOFError, AuthenticationError) as exc:  # a client that failed the key
            log.warning("refused a warehouse query connection: %s", exc)
            continue
        threading.Thread(target=_answer, args=(connection, query), daemon=True).start()


def _answer(connection: Connection, query: Query) -> None:
    with connection:
        try:
            sql, params = connection.recv()
            connection.send(_reply(query, sql, params))
        except (OSError, EOFError):  # the asker went away: nobody is left to answer
            return


def _reply(query: Query, sql: str, params: Mapping[str, Any]) -> tuple[str, Any]:
    try:
        return "rows", query(sql, params)
    except InvalidInput as exc:
        return "invalid", str(exc)
    except Exception as exc:
        log.exception("warehouse query failed")
        return "failed", f"{type(exc).__name__}: {exc}"
