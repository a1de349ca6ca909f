"""A real aiosmtpd server for the SMTP mailer tests: the local sink's Maildir handler (which
refuses `bounce-*` with 550 and `throttle-*` with 421) plus scripted trouble, on a port the
OS picks, optionally closing connections idle for longer than `idle_timeout_s`. It is
aiosmtpd's own SMTP class (not the sink's), offering PIPELINING as the sink does, or not."""

from __future__ import annotations

import mailbox
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.runner.smtp_sink import MaildirHandler


class ScriptedHandler(MaildirHandler):
    """Adds: `rcpt_replies` / `data_replies` (answer the next RCPTs / ends of DATA with these,
    storing nothing), `storm(fraction, rcpts)` (421 to a seeded-random fraction of the next
    RCPTs), the connections seen, and PIPELINING offered or not."""

    def __init__(self, maildir: Path, pipelining: bool = True) -> None:
        super().__init__(maildir)
        self.maildir_path = Path(maildir)
        self.pipelining = pipelining
        self.rcpt_replies: list[str] = []
        self.data_replies: list[str] = []
        self.mail_options: list[list[str]] = []  # each DATA's MAIL FROM parameters
        self.connections = 0
        self.stormed = 0  # RCPTs answered 421 by the storm
        self.noops = 0
        self.quits = 0
        self.ehlo_names: list[str] = []
        self.rcpt_tos: list[str] = []  # every RCPT TO address the server accepted
        self._storm: tuple[float, int] | None = None
        self._random = random.Random(11)

    def storm(self, fraction: float, rcpts: int) -> None:
        self._storm = (fraction, rcpts)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list:
        self.connections += 1
        self.ehlo_names.append(hostname)
        if self.pipelining:
            return await super().handle_EHLO(server, session, envelope, hostname, responses)
        session.host_name = hostname
        return responses

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str
    ) -> str:
        self.noops += 1
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        if self._storm is not None:
            fraction, left = self._storm
            self._storm = (fraction, left - 1) if left > 1 else None
            if self._random.random() < fraction:
                self.stormed += 1
                return "421 4.7.0 slow down"
        self.rcpt_tos.append(address)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mail_options.append(list(envelope.mail_options))
        if self.data_replies:
            return self.data_replies.pop(0)
        return await super().handle_DATA(server, session, envelope)

    def messages(self) -> list[Any]:
        return list(mailbox.Maildir(str(self.maildir_path), create=False))

    def raw_messages(self) -> list[bytes]:
        box = mailbox.Maildir(str(self.maildir_path), create=False)
        return [box.get_bytes(key) for key in box.iterkeys()]

    def message_ids(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]).strip("<>") for m in self.messages())


class _EphemeralPortController(Controller):
    """aiosmtpd's Controller bound to port 0: the real port is read back once bound."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def smtp_server(
    maildir: Path, idle_timeout_s: float = 300.0, pipelining: bool = True, **smtp_options: Any
) -> Iterator[tuple[ScriptedHandler, int]]:
    """`smtp_options`: aiosmtpd's SMTP keyword arguments (enable_SMTPUTF8, ...)."""
    handler = ScriptedHandler(maildir, pipelining)
    controller = _EphemeralPortController(
        handler, hostname="127.0.0.1", port=0, timeout=idle_timeout_s, **smtp_options
    )
    controller.start()
    try:
        yield handler, int(controller.port)
    finally:
        controller.stop()
