"""Helpers for tests (importable as `support`; fixtures live in conftest.py)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Sequence

from shared import topology
from shared.ports import OutgoingEmail, SendResult

REPO = topology.REPO_ROOT
EVENTS_DIR = REPO / "tests" / "events"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def push_body(data: bytes, attributes: dict[str, str] | None = None, message_id: str = "1") -> dict:
    """The body a Pub/Sub push subscription POSTs (functions-framework makes it a CloudEvent)."""
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes or {},
            "messageId": message_id,
            "publishTime": "2026-11-30T12:00:00.000Z",
        },
        "subscription": "projects/local/subscriptions/test",
    }


def load_event(name: str) -> dict:
    return json.loads((EVENTS_DIR / name).read_text())


class RecordingMailer:
    """A Mailer that accepts everything and remembers it (a port fake, not a mock)."""

    name = "recording"

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.sent: list[OutgoingEmail] = []
        self.fail_with = fail_with
        self._lock = threading.Lock()

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        if self.fail_with:
            raise self.fail_with
        with self._lock:
            self.sent.extend(emails)
        return [SendResult(e.message_id, "sent", e.message_id) for e in emails]


class FakeClock:
    """Time that moves only when a test sets `now` (a real clock for the Clock port)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SleepClock(FakeClock):
    """A monotonic clock that moves only when slept on; remembers each sleep."""

    def __init__(self, now: float = 0.0) -> None:
        super().__init__(now)
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
