"""A real SMTP server (aiosmtpd) that stores every message it receives in a Maildir.

Local mode sends mail here, so a person can read what the pipeline sent at /inbox. A recipient
address starting with `bounce-` is refused with 550 and one starting with `throttle-` with 421,
so the local pipeline can exercise its failure paths against a real SMTP conversation.
"""

from __future__ import annotations

import mailbox
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    def __init__(self, maildir: Path) -> None:
        self._maildir = mailbox.Maildir(str(maildir), create=True)
        self._lock = threading.Lock()
        self.received = 0

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
        with self._lock:
            self._maildir.add(header.encode() + bytes(content))
            self.received += 1
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self, maildir: Path, host: str = "127.0.0.1", port: int = 1025) -> None:
        self.maildir = Path(maildir)
        self.handler = MaildirHandler(self.maildir)
        self._controller = Controller(
            self.handler, hostname=host, port=port, data_size_limit=10 * 1024 * 1024
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
