"""RecordingServer: a threaded HTTP server on 127.0.0.1:<free port> that routes JSON requests to
handlers, records every call, and collects protocol violations (a test asserts there are none).

A handler checks its request with `expect(condition, message)`; a failed check answers 400 and
is recorded in `violations`, so a malformed request can never pass unnoticed. `fail_next` makes
the next matching requests answer with an error status (429, 503 ...) before any handler runs.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Reply = tuple[int, dict[str, Any]]
Handler = Callable[..., Reply]


class Violation(Exception):
    """The request breaks the API's contract."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise Violation(message)


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class _Failure:
    status: int
    path_contains: str
    body: dict[str, Any]
    times: int


@dataclass
class RecordingServer:
    """Subclasses register routes with `route(method, pattern, handler)`; the pattern's named
    groups become keyword arguments of the handler, together with `body`."""

    calls: list[Call] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._failures: list[_Failure] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> RecordingServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- configuration -------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern + r"\Z"), handler))

    def fail_next(
        self, status: int, times: int = 1, path_contains: str = "", reason: str = ""
    ) -> None:
        """Answer the next `times` requests whose path contains `path_contains` with `status`."""
        error: dict[str, Any] = {"code": status, "message": f"injected {status}"}
        if reason:
            error["errors"] = [{"reason": reason, "message": f"injected {reason}"}]
        with self.lock:
            self._failures.append(_Failure(status, path_contains, {"error": error}, times))

    def calls_to(self, fragment: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if fragment in c.path]

    # -- dispatch ------------------------------------------------------------------------

    def dispatch(self, method: str, target: str, raw: bytes, content_type: str) -> Reply:
        parts = urlsplit(target)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with self.lock:
            self.calls.append(Call(method, parts.path, parse_qs(parts.query), body))
            injected = self._injected(parts.path)
        if injected is not None:
            return injected
        try:
            if raw:
                expect(content_type.startswith("application/json"), f"content type {content_type}")
                expect(not isinstance(body, bytes), "body is not JSON")
            return self._route(method, parts.path, body)
        except Violation as exc:
            with self.lock:
                self.violations.append(f"{method} {parts.path}: {exc}")
            return 400, _error(400, str(exc), "invalid")

    def _injected(self, path: str) -> Reply | None:
        for failure in self._failures:
            if failure.path_contains in path and failure.times > 0:
                failure.times -= 1
                return failure.status, failure.body
        return None

    def _route(self, method: str, path: str, body: Any) -> Reply:
        for route_method, pattern, handler in self._routes:
            match = pattern.match(path)
            if match and route_method == method:
                return handler(body=body, **match.groupdict())
        raise Violation(f"no such API method: {method} {path}")


def _error(status: int, message: str, reason: str) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"reason": reason, "message": message}],
        }
    }


def error_reply(status: int, message: str, reason: str) -> Reply:
    return status, _error(status, message, reason)


def _handler_class(owner: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per response

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, reply = owner.dispatch(
                self.command, self.path, raw, self.headers.get("Content-Type", "")
            )
            out = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return _Handler
