"""A real SMTP server (aiosmtpd) that stores every message it receives in a Maildir.

Local mode sends mail here, so a person can read what the pipeline sent at /inbox. A recipient
address starting with `bounce-` is refused with 550 and one starting with `throttle-` with 421,
so the local pipeline can exercise its failure paths against a real SMTP conversation.

With `reports`, every accepted message is also reported as delivered through the webhook path
an ESP's reports take (shared/runner/sink_reports.py).

A message is answered 250 only once it is in the Maildir. It is written without fsync (which
mailbox.Maildir.add does, ~0.6 ms to several ms per message here, blocking the event loop):
this is a development inbox, and a written file is in the page cache, so it survives the sink
process being killed; only a crash of the machine itself could lose the latest messages.
"""

from __future__ import annotations

import itertools
import mailbox
import os
import socket
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.runner.sink_reports import DeliveryReports
from shared.runner.sink_smtp import SinkSMTP

DATA_SIZE_LIMIT = 10 * 1024 * 1024


class MaildirWriter:
    """Delivers messages into a Maildir as its protocol says: written under tmp/, then renamed
    into new/, so a reader never sees half a message. Unique names as mailbox.Maildir makes
    them (time, pid, a counter, host), read back by mailbox.Maildir like its own."""

    _counter = itertools.count()  # per process, like mailbox.Maildir's

    def __init__(self, path: Path) -> None:
        mailbox.Maildir(str(path), create=True)  # tmp/, new/ and cur/
        self._tmp, self._new = path / "tmp", path / "new"
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")

    def add(self, message: bytes) -> str:
        """Store `message` byte for byte; returns its Maildir key."""
        now = time.time()
        key = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._counter)}.{self._host}"
        tmp = self._tmp / key
        with open(tmp, "xb") as file:  # "x": never overwrite
            file.write(message)
        os.rename(tmp, self._new / key)
        return key


class MaildirHandler:
    def __init__(self, maildir: Path, reports: DeliveryReports | None = None) -> None:
        self._writer = MaildirWriter(Path(maildir))
        self._reports = reports
        self.received = 0

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        """aiosmtpd's reply plus PIPELINING (RFC 2920): aiosmtpd reads commands one line at a
        time and SinkSMTP reads no further than the end of DATA, so a group is served in order."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        local = address.partition("@")[0].lower()
        if local.startswith("bounce-"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("throttle-"):
            return "421 4.7.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content or envelope.content
        recipients = ", ".join(envelope.rcpt_tos)
        header = f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {recipients}\r\n"
        # On the event loop: ~0.05 ms, less than handing it to a thread and back.
        self._writer.add(header.encode() + bytes(content))
        if self._reports is not None:  # reported as delivered, as an ESP's webhook would
            self._reports.accepted(content, envelope.rcpt_tos, time.time())
        self.received += 1
        return "250 Message accepted for delivery"


class _SinkController(Controller):
    def factory(self) -> SMTP:
        return SinkSMTP(self.handler, **self.SMTP_kwargs)


class SmtpSink:
    def __init__(
        self,
        maildir: Path,
        host: str = "127.0.0.1",
        port: int = 1025,
        data_size_limit: int = DATA_SIZE_LIMIT,
        reports: DeliveryReports | None = None,
    ) -> None:
        self.maildir = Path(maildir)
        self.reports = reports
        self.handler = MaildirHandler(self.maildir, reports)
        self._controller = _SinkController(
            self.handler, hostname=host, port=port, data_size_limit=data_size_limit
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        if self.reports is not None:
            self.reports.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
        if self.reports is not None:
            self.reports.stop()
