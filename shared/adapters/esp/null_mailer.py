"""NullMailer: accepts everything and sends nothing (benchmarks and dry runs)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from shared.ports import OutgoingEmail, SendResult


class NullMailer:
    name = "null"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted = 0

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        with self._lock:
            self.accepted += len(emails)
        return [SendResult(e.message_id, "sent", provider_message_id=e.message_id) for e in emails]
