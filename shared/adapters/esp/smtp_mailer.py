"""SmtpMailer: the Mailer port over SMTP, with a pool of reusable connections.

Pool: one connection per worker thread (smtplib connections are not thread-safe), kept open
between chunks. A connection idle for longer than `idle_check_s` is probed with NOOP before
use, so one the server closed while idle is replaced before a transaction starts on it; one
found closed during a transaction anyway is replaced and the message tried once more (should
the server have dropped it after accepting DATA, that is a duplicate with the same
Message-ID: at-least-once, like every retry). `close()` says QUIT on every pooled connection,
whichever thread opened it (the container closes the mailer when its process stops), and a
connection given up while it is still in good order (stale after idling) says QUIT too.
EHLO gives `helo_name` (MAILPIPE_SMTP_HELO_NAME; this host's FQDN when empty): receiving MTAs
check it against the sending address's reverse DNS.

One SMTP transaction per message (each carries its own personalized MIME), through
SmtpConnection: pipelined when the server offers PIPELINING, the chunk's next message begun
with this one's data, so a message costs one round trip; a chunk that stops early closes a
connection holding such a begun transaction (ending it would send an empty message). Replies:
2xx sent; a server-wide throttle (421, 454, or a 4xx whose enhanced status is 4.7.0 or whose
text speaks of rates, connections or "too many") means "slow down": Throttled when nothing in
the chunk was accepted yet, otherwise the rest of the chunk is returned transient ("throttled:
..."), which the rate limiter reads; any other 4xx (450/451/452 to one recipient, greylisting
with 4.2.x or 4.7.1) is transient for that message alone; 5xx permanent for that message. A
message the client cannot even write (a line break in an address) fails permanently alone. A
server that cannot be reached is a TransientError in the same way (raised, or the rest
transient). Refused credentials are a ConfigurationError naming the settings, never their
values.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parseaddr

from shared.adapters.esp.chunk_results import ChunkResults
from shared.adapters.esp.smtp_connection import Envelope, SmtpConnection
from shared.domain.errors import ConfigurationError, Throttled, TransientError
from shared.ports import OutgoingEmail, SendResult

THROTTLE_CODES = frozenset({421, 454})
# A 4xx for the whole server rather than this recipient: RFC 3463's 4.7.0 (Gmail's "4.7.0 Try
# again later", rate and connection limits), or a reply that says so in words. Greylisting
# (4.2.x, 4.7.1) and a busy mailbox are about one recipient.
_SERVER_WIDE = re.compile(
    rb"^4\.7\.0\b|\b(rate|too many|connection limit|throttl|slow down)", re.IGNORECASE
)
_PER_RECIPIENT_STATUS = re.compile(rb"^4\.(2\.\d+|7\.1)\b")


@dataclass
class _Pooled:
    conn: SmtpConnection
    last_used: float


class SmtpMailer:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        timeout_s: float = 30.0,
        idle_check_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        helo_name: str = "",
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout_s
        self._idle_check_s = idle_check_s
        self._helo_name = helo_name or None  # None: smtplib's socket.getfqdn()
        self._clock = clock
        self._local = threading.local()
        self._pool: set[SmtpConnection] = set()
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SmtpMailer({self._host}:{self._port})"

    @property
    def open_connections(self) -> int:
        with self._pool_lock:
            return len(self._pool)

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        chunk = ChunkResults(emails)
        envelopes = [_envelope(email) for email in emails]
        try:
            for index, envelope in enumerate(envelopes):
                following = envelopes[index + 1] if index + 1 < len(envelopes) else None
                try:
                    self._deliver(chunk, index, envelope, following)
                except TransientError as exc:
                    return chunk.interrupted(exc)
            return chunk.results()
        finally:
            self._drop_half_begun()

    def close(self) -> None:
        """QUIT every pooled connection."""
        with self._pool_lock:
            conns, self._pool = self._pool, set()
        for conn in conns:
            _quit(conn)
        self._local.pooled = None

    # --- one message ---------------------------------------------------------------------
    def _deliver(
        self,
        chunk: ChunkResults,
        index: int,
        envelope: Envelope,
        following: Envelope | None,
    ) -> None:
        """Record the message's fate in `chunk`; raise Throttled / TransientError to stop.
        `following`, the next message of the chunk, is begun with this one's data."""
        reply: bytes | str
        try:
            self._sendmail(envelope, following)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, ...
            code, reply = exc.smtp_code, exc.smtp_error
        except (ValueError, UnicodeError) as exc:  # not writable as SMTP: nothing was sent
            chunk.permanent([index], f"{type(exc).__name__}: {exc}")
            return
        else:
            chunk.sent([index])
            return
        self._record(chunk, index, code, reply)

    def _sendmail(
        self, envelope: Envelope, following: Envelope | None, retry_stale: bool = True
    ) -> None:
        """One transaction; a connection found closed is replaced and the message retried once."""
        conn = self._connection()
        try:
            conn.send_one(*envelope, then=following)
        except smtplib.SMTPServerDisconnected as exc:
            self._discard(conn)
            if retry_stale:
                self._sendmail(envelope, following, retry_stale=False)
                return
            raise TransientError(f"SMTP server {self._host} disconnected: {exc}") from exc
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused):
            self._discard_if_closed(conn)
            raise
        except OSError as exc:
            self._discard(conn)
            raise TransientError(f"SMTP connection to {self._host} failed: {exc}") from exc
        finally:
            self._touch(conn)

    def _record(self, chunk: ChunkResults, index: int, code: int, reply: bytes | str) -> None:
        raw = reply if isinstance(reply, bytes) else str(reply).encode()
        detail = f"{code} {raw.decode(errors='replace')}"
        if is_server_wide(code, raw):
            raise Throttled(f"SMTP server asked us to slow down: {detail}")
        if 400 <= code < 500:
            chunk.transient([index], detail)
        else:
            chunk.permanent([index], detail)

    def _drop_half_begun(self) -> None:
        """A chunk stopped after the next message's transaction was begun: that transaction
        cannot be ended without sending a message, so the connection goes (it aborts it)."""
        pooled: _Pooled | None = getattr(self._local, "pooled", None)
        if pooled is not None and pooled.conn.next_begun:
            self._discard(pooled.conn)

    # --- the pool ------------------------------------------------------------------------
    def _connection(self) -> SmtpConnection:
        pooled: _Pooled | None = getattr(self._local, "pooled", None)
        if pooled is not None and self._alive(pooled):
            return pooled.conn
        if pooled is not None:
            self._discard(pooled.conn, polite=True)
        conn = self._connect()
        self._local.pooled = _Pooled(conn, self._clock())
        with self._pool_lock:
            self._pool.add(conn)
        return conn

    def _alive(self, pooled: _Pooled) -> bool:
        if pooled.conn.sock is None:
            return False
        if pooled.conn.next_begun:  # mid-transaction: a NOOP would be taken for message text
            return True
        if self._clock() - pooled.last_used < self._idle_check_s:
            return True
        try:
            return pooled.conn.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            pooled.conn.close()  # it did not answer: no QUIT either
            return False

    def _connect(self) -> SmtpConnection:
        where = f"{self._host}:{self._port}"
        try:
            conn = SmtpConnection(
                self._host, self._port, local_hostname=self._helo_name, timeout=self._timeout
            )
            if self._starttls:
                conn.starttls(context=ssl.create_default_context())
            if self._username:
                conn.login(self._username, self._password)
            return conn
        except smtplib.SMTPAuthenticationError as exc:
            raise ConfigurationError(
                f"SMTP server {where} refused MAILPIPE_SMTP_USERNAME/MAILPIPE_SMTP_PASSWORD "
                f"({exc.smtp_code})"
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise ConfigurationError(
                f"SMTP server {where}: {exc} (MAILPIPE_SMTP_STARTTLS)"
            ) from exc
        except smtplib.SMTPConnectError as exc:
            if exc.smtp_code in THROTTLE_CODES:
                raise Throttled(f"SMTP server {where} busy: {exc.smtp_code}") from exc
            raise TransientError(f"SMTP server {where} refused the connection: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"SMTP server {where} unreachable: {exc}") from exc

    def _touch(self, conn: SmtpConnection) -> None:
        pooled: _Pooled | None = getattr(self._local, "pooled", None)
        if pooled is not None and pooled.conn is conn:
            pooled.last_used = self._clock()

    def _discard_if_closed(self, conn: SmtpConnection) -> None:
        if conn.sock is None:  # smtplib closes the connection itself after a 421
            self._discard(conn)

    def _discard(self, conn: SmtpConnection, polite: bool = False) -> None:
        """Out of the pool and closed; with `polite`, after a QUIT when it is still open and
        not mid-transaction (a server that answers nothing costs at most the timeout)."""
        pooled: _Pooled | None = getattr(self._local, "pooled", None)
        if pooled is not None and pooled.conn is conn:
            self._local.pooled = None
        with self._pool_lock:
            self._pool.discard(conn)
        _quit(conn) if polite else conn.close()


def _quit(conn: SmtpConnection) -> None:
    """QUIT, then close; just close when mid-transaction (a QUIT would be message text) or
    when the connection is already gone."""
    if conn.sock is None or conn.next_begun:
        conn.close()
        return
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


def is_server_wide(code: int, reply: bytes) -> bool:
    """Whether an SMTP reply throttles the whole server rather than refusing one recipient."""
    if code in THROTTLE_CODES:
        return True
    if not 400 <= code < 500 or _PER_RECIPIENT_STATUS.match(reply):
        return False
    return bool(_SERVER_WIDE.search(reply))


def _envelope(email: OutgoingEmail) -> Envelope:
    return parseaddr(email.sender)[1], email.recipient, email.raw
