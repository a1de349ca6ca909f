"""The local warehouse's query service: the pipeline's own queries (A/B decisions, engagement
segments, soft-bounce history) are answered by one process, as BigQuery answers them away from
the function that asks.

Without it, DuckDB (~25 MB of code, ~30 MB more once it runs a query) loaded into whichever
function process happened to ask first, and which one that was decided a campaign's peak
memory. The runner's warehouse process serves queries on an abstract Unix socket named after
the warehouse folder (no file, no path-length limit). Both sides prove they hold the key that
only the data directory's owner can read before anything is unpickled, and every wait has a
timeout, so a peer that says nothing or the wrong thing costs a fallback, never a hang. When
nothing answers (tests, the CLI, before the service is up, after a crash) `ask` returns None
and the caller queries in-process, so nothing depends on the service running.

`ask_pages` streams a large result (a campaign's audience snapshot: a window over the whole
subscriber mirror) a page at a time, as BigQuery pages a job's results: the asking function
holds one page, and the query's working memory stays in the warehouse's process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from multiprocessing.connection import Connection, Listener, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any

from shared.domain.errors import InvalidInput
from shared.ports import Document

log = logging.getLogger("mailpipe.warehouse_service")

KEY_FILE = ".queries.key"
ANSWER_TIMEOUT_S = 120  # the longest a pipeline query may take before the asker runs it itself
GREETING_TIMEOUT_S = 10  # for a connecting peer to prove it holds the key and ask
Query = Callable[[str, Mapping[str, Any] | None], list[Document]]
PagedQuery = Callable[[str, Mapping[str, Any] | None, int], Iterator[list[Document]]]


def address(folder: Path) -> str:
    """The abstract socket address of the service for the warehouse in `folder`."""
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:24]
    return f"\0mailpipe-warehouse-{digest}"


def ask(folder: Path, sql: str, params: Mapping[str, Any] | None) -> list[Document] | None:
    """The rows of `sql` from the service, or None when no service answers in time (also when
    it went away mid-question, or is not ours): the caller then asks DuckDB itself."""
    try:
        with _asked(folder, (sql, dict(params or {}), None)) as connection:
            kind, value = connection.recv()
    except Exception as exc:  # no service, a timeout, a peer without the key
        log.debug("warehouse query service did not answer: %r", exc)
        return None
    return list(_value(kind, value))


def ask_pages(
    folder: Path, sql: str, params: Mapping[str, Any] | None, page_size: int
) -> Iterator[list[Document]] | None:
    """The rows of `sql` from the service `page_size` at a time, or None when no service
    answers with a first page (the caller then asks DuckDB itself). A service lost after the
    first page raises: what was read cannot be taken back, and the caller starts over."""
    try:
        connection = _asked(folder, (sql, dict(params or {}), page_size))
    except Exception as exc:
        log.debug("warehouse query service did not answer: %r", exc)
        return None
    try:
        first = connection.recv()
    except Exception as exc:
        connection.close()
        log.debug("warehouse query service did not answer: %r", exc)
        return None
    return _pages(connection, first)


def _pages(connection: Connection, first: tuple[str, Any]) -> Iterator[list[Document]]:
    with connection:
        kind, value = first
        while kind != "end":
            yield _value(kind, value)
            try:
                kind, value = connection.recv()
            except (OSError, EOFError) as exc:
                raise RuntimeError(f"the warehouse query service went away: {exc!r}") from exc


def _asked(folder: Path, question: tuple[str, dict[str, Any], int | None]) -> Connection:
    """A connection to the service that has proven the key both ways and sent `question`."""
    key = (folder / KEY_FILE).read_bytes()
    connection = _connect(address(folder), ANSWER_TIMEOUT_S)
    try:
        answer_challenge(connection, key)
        deliver_challenge(connection, key)
        connection.send(question)
    except BaseException:
        connection.close()
        raise
    return connection


def _value(kind: str, value: Any) -> Any:
    if kind in ("rows", "page"):
        return value
    if kind == "invalid":
        raise InvalidInput(value, field="sql")
    raise RuntimeError(f"the warehouse query service failed: {value}")


def serve(folder: Path, query: Query, pages: PagedQuery) -> threading.Thread:
    """Answer queries with `query`, and paged ones with `pages`, from a daemon thread (one
    more thread per connection)."""
    key = secrets.token_bytes(32)
    listener = Listener(address(folder), "AF_UNIX")  # claims the address before the key is out
    _write_key(folder / KEY_FILE, key)
    thread = threading.Thread(
        target=_accept_forever, args=(listener, key, query, pages), name="warehouse-queries",
        daemon=True,
    )  # fmt: skip
    thread.start()
    return thread


def _connect(where: str, timeout_s: float) -> Connection:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _limit_waits(sock, timeout_s)
        sock.connect(where)
        return Connection(sock.detach())
    finally:
        sock.close()


def _limit_waits(sock: socket.socket, timeout_s: float) -> None:
    """Kernel send/receive timeouts, which (unlike settimeout) hold for the raw descriptor
    multiprocessing's Connection reads and writes: a wait past them fails with an OSError."""
    interval = struct.pack("ll", int(timeout_s), 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)


def _write_key(path: Path, key: bytes) -> None:
    staged = path.with_name(f"{path.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(staged, flags, 0o600), "wb") as handle:
        handle.write(key)
    os.replace(staged, path)


def _accept_forever(listener: Listener, key: bytes, query: Query, pages: PagedQuery) -> None:
    while True:
        try:
            connection = listener.accept()  # no handshake here: a silent peer must not stall it
        except OSError as exc:
            log.warning("could not accept a warehouse query connection: %s", exc)
            continue
        answer = threading.Thread(target=_answer, args=(connection, key, query, pages))
        answer.daemon = True
        answer.start()


def _answer(connection: Connection, key: bytes, query: Query, pages: PagedQuery) -> None:
    with connection:
        try:
            _limit_connection_waits(connection, GREETING_TIMEOUT_S)
            deliver_challenge(connection, key)
            answer_challenge(connection, key)
            sql, params, page_size = connection.recv()
            # An asker may take a while over a page (it writes each one out): give it as long
            # as it gives the service for an answer.
            _limit_connection_waits(connection, ANSWER_TIMEOUT_S)
        except Exception as exc:  # a peer without the key, or one that went quiet
            log.warning("refused a warehouse query connection: %r", exc)
            return
        try:
            if page_size is None:
                connection.send(_reply(query, sql, params))
            else:
                _send_pages(connection, pages, sql, params, page_size)
        except OSError:  # the asker went away: nobody is left to answer
            return


def _limit_connection_waits(connection: Connection, timeout_s: float) -> None:
    with socket.socket(fileno=os.dup(connection.fileno())) as view:
        _limit_waits(view, timeout_s)


def _send_pages(
    connection: Connection, pages: PagedQuery, sql: str, params: Mapping[str, Any], size: int
) -> None:
    try:
        for rows in pages(sql, params, size):
            connection.send(("page", rows))
    except InvalidInput as exc:
        connection.send(("invalid", str(exc)))
        return
    except OSError:
        raise
    except Exception as exc:
        log.exception("warehouse query failed")
        connection.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("end", None))


def _reply(query: Query, sql: str, params: Mapping[str, Any]) -> tuple[str, Any]:
    try:
        return "rows", query(sql, params)
    except InvalidInput as exc:
        return "invalid", str(exc)
    except Exception as exc:
        log.exception("warehouse query failed")
        return "failed", f"{type(exc).__name__}: {exc}"
