"""SmtpMailer: the Mailer port over SMTP, reusing one connection per thread.

Replies map to outcomes: 2xx sent; 421/450/451/452/454 transient (421 and 454 mean the server
wants us to slow down: the rest of the chunk is deferred); other 5xx permanent.
"""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Sequence
from email.utils import parseaddr

from shared.domain.errors import Throttled, TransientError
from shared.ports import OutgoingEmail, SendResult

THROTTLE_CODES = frozenset({421, 454})
TRANSIENT_CODES = frozenset({421, 450, 451, 452, 454})


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
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout_s
        self._local = threading.local()

    def _connection(self) -> smtplib.SMTP:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
            if self._starttls:
                conn.starttls()
            if self._username:
                conn.login(self._username, self._password)
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"SMTP server {self._host}:{self._port} unreachable: {exc}") from exc
        self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
        self._local.conn = None

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        results: list[SendResult] = []
        for index, email in enumerate(emails):
            result = self._send_one(email)
            if result.status == "transient" and result.detail.startswith(("421", "454")):
                if index == 0:
                    raise Throttled(f"SMTP server asked us to slow down: {result.detail}")
                rest = emails[index:]
                return results + [SendResult(e.message_id, "transient", detail=result.detail) for e in rest]
            results.append(result)
        return results

    def _send_one(self, email: OutgoingEmail, retry: bool = True) -> SendResult:
        conn = self._connection()
        try:
            refused = conn.sendmail(parseaddr(email.sender)[1], [email.recipient], email.raw)
        except smtplib.SMTPServerDisconnected:
            self._drop_connection()
            if retry:  # a pooled connection the server closed while idle
                return self._send_one(email, retry=False)
            return SendResult(email.message_id, "transient", detail="server disconnected")
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            return _result(email, code, reply)
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                self._drop_connection()
            return _result(email, exc.smtp_code, exc.smtp_error)
        except (OSError, socket.timeout) as exc:
            self._drop_connection()
            return SendResult(email.message_id, "transient", detail=f"connection error: {exc}")
        if refused:
            code, reply = next(iter(refused.values()))
            return _result(email, code, reply)
        return SendResult(email.message_id, "sent", provider_message_id=email.message_id)


def _result(email: OutgoingEmail, code: int, reply: bytes | str) -> SendResult:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    status = "transient" if code in TRANSIENT_CODES or 400 <= code < 500 else "permanent"
    return SendResult(email.message_id, status, detail=f"{code} {text}"[:300])
