"""Helpers for the trigger tests: a clock the test moves, confirmed subscribers, POST /events,
and the local pipeline (the real bus and the real functions through functions-framework) run
in this thread until it is idle."""

from __future__ import annotations

import json
import mailbox
import shutil
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from support import REPO

from shared import topology
from shared.adapters.local.bus_worker import DeliveryRefused
from shared.bootstrap import Container
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.runner.functions_host import FunctionsHost

API_KEY = "test-events-key"
# A Monday, 10:00 UTC: outside the shipped quiet hours (21:00-08:00).
MONDAY_10_UTC = datetime(2026, 5, 4, 10, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0
PIPELINE = (
    "triggers-on-behaviour-events",
    "render-on-render-requests",
    "send-on-send-requests",
    "warehouse-on-analytics-events",
    "preference-sync-on-subscriber-events",
)
CART = [
    {"name": "Blue mug", "quantity": 2, "price": 12.5, "url": "https://shop.example/mug",
     "image_url": "https://img.example/mug.png"},
    {"name": "Green teapot", "quantity": 1, "price": 39, "url": "https://shop.example/teapot"},
]  # fmt: skip


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self, now: float = MONDAY_10_UTC) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def add_confirmed(container: Container, email: str, **fields: Any) -> Subscriber:
    fields = {"status": CONFIRMED, "first_name": "Ann", **fields}
    subscriber = Subscriber(id=container.subscribers.id_for(email), email=email, **fields)
    container.subscribers.create(subscriber)
    return subscriber


def event(email: str, name: str, at: float, key: str, **properties: Any) -> dict[str, Any]:
    return {"subscriber": {"email": email}, "name": name, "timestamp": rfc3339(at),
            "idempotency_key": key, "properties": properties}  # fmt: skip


def post_events(client: Any, body: Any, key: str = API_KEY) -> Any:
    return client.post("/", data=json.dumps(body), content_type="application/json",
                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def template_root_with(tmp_path: Path, triggers_yaml: str) -> Path:
    """A copy of the repo's templates whose trigger definitions are `triggers_yaml`."""
    root = tmp_path / "templates"
    shutil.copytree(REPO / "templates", root)
    (root / "triggers" / "triggers.yaml").write_text(triggers_yaml)
    return root


class Pipeline:
    """Delivers bus messages to the functions, one subscription at a time, in this thread."""

    def __init__(self, container: Container, subscriptions: Iterable[str] = PIPELINE) -> None:
        self.container = container
        host = FunctionsHost()
        self.deliverers = {s: host.deliverer(topology.subscription(s)) for s in subscriptions}

    def drain(self, timeout_s: float = 30.0) -> None:
        """Deliver until nothing is ready, leased or waiting for a retry; fails when anything
        was dead-lettered."""
        bus = self.container.bus
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            delivered = 0
            for name, deliver in self.deliverers.items():
                for delivery in bus.pull(name, 50):
                    delivered += 1
                    try:
                        deliver(delivery)
                    except DeliveryRefused as exc:
                        bus.nack(name, delivery.message_id, str(exc))
                    else:
                        bus.ack(name, delivery.message_id)
            if delivered:
                continue
            depths = bus.depths()
            if all(depths[s]["ready"] + depths[s]["leased"] + depths[s]["backoff"] == 0
                   for s in self.deliverers):  # fmt: skip
                assert not self.dead_letters(), f"dead letters: {self.dead_letters()}"
                return
            time.sleep(0.02)
        raise AssertionError(f"pipeline still busy after {timeout_s}s: {bus.depths()}")

    def sweep(self) -> None:
        """What Cloud Scheduler does every minute, then everything it causes."""
        self.container.outbox.publish_json(topology.BEHAVIOUR_EVENTS, [{"kind": "sweep"}])
        self.drain()

    def dead_letters(self) -> dict[str, int]:
        return {k: v for k, v in self.container.bus.counts().items() if v}


def maildir_messages(maildir: Path) -> list[bytes]:
    box = mailbox.Maildir(str(maildir), create=True)
    return [box.get_bytes(k) for k in box.iterkeys()]
