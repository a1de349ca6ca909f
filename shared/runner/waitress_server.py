"""WaitressServer: the runner's HTTP server, waitress with limits a public server needs.

Werkzeug's development server, used before, answered nothing at all to a request with two
Content-Length headers or a bad chunk size, had no timeouts (a request whose headers never
finished held its connection until the client gave up) and started a thread per connection.
Waitress is a maintained production WSGI server in pure Python: it answers malformed framing
with 400, refuses a declared body over `max_request_body_size` with 413 before reading it,
keeps bodies over 512 KB in a temporary file rather than memory, and closes a connection idle
for `channel_timeout` seconds, including one whose request is half sent. A request that
trickles in without ever finishing is closed after HEADER_DEADLINE_S as well (waitress itself
only watches idleness), by the small channel subclass below.

In GCP the functions-framework's gunicorn serves instead; the per-route limits that matter
there live in shared/entrypoints/http.py and apply under either server.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # the largest any route takes (admin CSV import)
MAX_HEADER_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 5  # a connection with nothing received for this long is closed
HEADER_DEADLINE_S = 10  # a request not fully received this long after it began is closed
THREADS = 8


class _TimedParser(HTTPRequestParser):
    """A request parser that remembers when its request began to arrive."""

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.began = time.monotonic()


class _DeadlineChannel(HTTPChannel):
    parser_class = _TimedParser


class _DeadlineServer(TcpWSGIServer):
    channel_class = _DeadlineChannel
    header_deadline_s: float = HEADER_DEADLINE_S

    def maintenance(self, now: float) -> None:
        """Waitress's idle check, plus: close a connection whose request began arriving more
        than header_deadline_s ago and is still incomplete (a slow drip keeps it 'active')."""
        super().maintenance(now)
        cutoff = time.monotonic() - self.header_deadline_s
        for channel in list(self.active_channels.values()):
            partial = getattr(channel, "request", None)
            if isinstance(partial, _TimedParser) and not channel.requests:
                channel.will_close = channel.will_close or partial.began < cutoff


class WaitressServer:
    """Serves `app` on host:port in a background thread; `stop()` closes every connection."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        header_deadline_s: float = HEADER_DEADLINE_S,
    ) -> None:
        adjustments = Adjustments(
            host=host,
            port=port,
            threads=THREADS,
            channel_timeout=idle_timeout_s,
            cleanup_interval=1,
            max_request_body_size=MAX_BODY_BYTES,
            max_request_header_size=MAX_HEADER_BYTES,
            expose_tracebacks=False,
            ident="mailpipe",
        )
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(THREADS)
        # What waitress.create_server does for one TCP address, with our server class.
        self._channels: dict[int, Any] = {}  # waitress's socket map: listener + connections
        self._server = _DeadlineServer(
            app,
            self._channels,
            False,
            None,
            dispatcher=dispatcher,
            adj=adjustments,
            sockinfo=adjustments.listen[0],
        )
        self._server.header_deadline_s = header_deadline_s
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def start(self) -> WaitressServer:
        self._server.accept_connections()
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.task_dispatcher.shutdown(timeout=5)
        self._server.close()
        for channel in list(self._channels.values()):
            channel.close()
        if self._thread:
            self._thread.join(timeout=5)
