"""The runner's HTTP server (waitress, shared/runner/waitress_server.py) in front of every
function, on a real socket (issue 16): malformed framing gets a 400, a body over the server's
limit a 413 before it is read, and a request that never finishes is closed by the server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from shared.runner.functions_host import FunctionsHost
from shared.runner.local_runner import root_app
from shared.runner.waitress_server import MAX_BODY_BYTES, WaitressServer

IDLE_S = 1
DEADLINE_S = 2


@pytest.fixture
def server(container) -> Iterator[WaitressServer]:
    wsgi = FunctionsHost().wsgi(root_app(container))
    running = WaitressServer(
        wsgi, "127.0.0.1", 0, idle_timeout_s=IDLE_S, header_deadline_s=DEADLINE_S
    ).start()
    yield running
    running.stop()


def exchange(port: int, *parts: bytes, pause_s: float = 0.0, wait_s: float = 15) -> bytes:
    """Send `parts` (pausing between them), then read until the server closes or `wait_s`."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as conn:
        for part in parts:
            try:
                conn.sendall(part)
            except OSError:  # the server closed on us: what it said is still readable
                break
            time.sleep(pause_s)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except TimeoutError:
            answer += b"<still open>"
        except ConnectionResetError:
            pass
        return answer


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def test_two_content_lengths_get_a_400(server) -> None:
    answer = exchange(
        server.port,
        b"POST /signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    )
    assert status(answer) == 400


def test_a_bad_chunk_size_gets_a_400(server) -> None:
    answer = exchange(
        server.port,
        b"POST /signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    )
    assert status(answer) == 400


def test_a_huge_declared_body_is_413_at_once_without_being_sent(server) -> None:
    started = time.monotonic()
    answer = exchange(
        server.port,
        f"GET /t/o/token HTTP/1.1\r\nHost: x\r\nContent-Length: {200 * 1024 * 1024}\r\n\r\n"
        "ab".encode(),
    )
    assert status(answer) == 413
    assert str(MAX_BODY_BYTES).encode() in answer  # names the limit
    assert time.monotonic() - started < IDLE_S  # answered, not timed out


def test_a_route_without_a_body_refuses_one_in_the_app(server) -> None:
    answer = exchange(
        server.port,
        b"GET /confirm?token=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Length: 5\r\n\r\nhello",
    )
    assert status(answer) == 413 and b"takes no request body" in answer


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /signup HTTP/1.1\r\nHost: x\r\n",
        b"POST /signup HTTP/1.1\r\nContent-Length: 99\r\n\r\n{",
    ],
    ids=["headers", "body"],
)
def test_a_request_that_stops_halfway_is_closed_by_the_server(server, partial) -> None:
    started = time.monotonic()
    answer = exchange(server.port, partial)
    assert b"<still open>" not in answer
    assert time.monotonic() - started < IDLE_S + 3


def test_a_request_that_trickles_in_forever_is_closed_by_the_server(server) -> None:
    started = time.monotonic()
    drip = [b"GET /signup HTTP/1.1\r\n"] + [b"X-Slow: 1\r\n"] * 40  # a line every 0.3 s: never idle
    answer = exchange(server.port, *drip, pause_s=0.3)
    assert b"<still open>" not in answer
    assert time.monotonic() - started < DEADLINE_S + 4


def test_well_formed_requests_are_served(server) -> None:
    answer = exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status(answer) == 200 and b'"status":"ok"' in answer
