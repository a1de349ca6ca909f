"""The SMTP sink with the faults of a busy receiving MTA, for the benchmark's fault run: it
answers 451 to a share of RCPTs (a deferral of that recipient: the same address is accepted on
a later try) and 421 in the greeting to a share of connections (too many connections). Which
ones comes from a seeded RNG, so a run's faults are reproducible up to the order in which the
sender's threads arrive. The second connection is always refused, so every run meets a 421 even
though the sender keeps its few connections open for the whole campaign."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.runner.sink_smtp import SinkSMTP
from shared.runner.smtp_sink import MaildirHandler

RCPT_DEFERRED = "451 4.3.0 Temporary failure, please try again later"
CONNECTION_REFUSED = "421 4.7.0 Too many connections, try again later"


class FaultyHandler(MaildirHandler):
    def __init__(self, maildir: Path, rcpt_fraction: float, connection_fraction: float,
                 seed: int) -> None:  # fmt: skip
        super().__init__(maildir)
        self.rcpt_fraction = rcpt_fraction
        self.connection_fraction = connection_fraction
        self.faults: Counter[str] = Counter()
        self._random = random.Random(seed)

    def refuse_connection(self) -> bool:
        self.faults["connections"] += 1
        refuse = self.faults["connections"] == 2 or self._random.random() < self.connection_fraction
        self.faults["connections_refused_421"] += refuse
        return refuse

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        self.faults["rcpts"] += 1
        if self._random.random() < self.rcpt_fraction:
            self.faults["rcpts_deferred_451"] += 1
            return RCPT_DEFERRED
        return await super().handle_RCPT(server, session, envelope, address, options)


class FaultySMTP(SinkSMTP):
    async def _handle_client(self) -> None:
        handler: FaultyHandler = self.event_handler
        if handler.refuse_connection():
            await self.push(CONNECTION_REFUSED)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class FaultySink:
    def __init__(self, maildir: Path, port: int, rcpt_fraction: float = 0.2,
                 connection_fraction: float = 0.02, seed: int = 16) -> None:  # fmt: skip
        self.handler = FaultyHandler(maildir, rcpt_fraction, connection_fraction, seed)
        self._controller = _Controller(self.handler, hostname="127.0.0.1", port=port)

    def start(self) -> FaultySink:
        self._controller.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._controller.stop()
        return dict(self.handler.faults)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return FaultySMTP(self.handler, **self.SMTP_kwargs)
