"""Durable delays: a pending trigger step survives `kill -9` of the local runner and is sent
exactly once; a sweep that dies after handing the mail to the render stage is finished by the
next one without a second mail; two sweeps at once take each run once.

The kill test runs the real `mailpipe run` in a subprocess (HTTP functions, the SQLite bus, the
scheduler publishing the sweep, the SMTP sink writing a Maildir) on real time, with a trigger
that waits 3 seconds.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support import REPO, RecordingMailer, free_port
from trigger_support import (
    API_KEY,
    CART,
    HOUR,
    FakeClock,
    Pipeline,
    add_confirmed,
    event,
    maildir_messages,
    post_events,
    template_root_with,
)

from shared import bootstrap, topology
from shared.bootstrap import Container
from shared.domain.errors import TransientError
from shared.metering import OperationMeter
from shared.ports import OutboundMessage, Publisher
from shared.repositories.trigger_runs import SENDING, SENT, WAITING
from shared.settings import Settings

pytestmark = pytest.mark.slow
WAIT_S = 3.0
SHORT_WAIT = f"""
triggers:
  - id: cart_abandonment
    event: cart_abandoned
    conditions: [{{property: items, op: exists}}]
    wait: {int(WAIT_S)}s
    unless: [purchase]
    template: cart_abandoned
"""


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Runner:
    """`mailpipe run` in a subprocess on a fixed data directory and ports."""

    def __init__(self, tmp_path: Path, template_root: Path) -> None:
        self.port, self.smtp_port = free_port(), free_port()
        self.data_dir = tmp_path / "var"
        self.log = tmp_path / "runner.log"
        self.env = {
            **os.environ,
            "MAILPIPE_DATA_DIR": str(self.data_dir),
            "MAILPIPE_TEMPLATE_ROOT": str(template_root),
            "PORT": str(self.port),
            "SMTP_PORT": str(self.smtp_port),
            "MAILPIPE_EVENTS_API_KEY": API_KEY,
            "MAILPIPE_SCHEDULER_INTERVAL_S": "0.25",
            "MAILPIPE_BUS_POLL_INTERVAL_S": "0.02",
            "PYTHONPATH": str(REPO),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Runner:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shared.cli.main", "run"], env=self.env, cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        wait_for(self._healthy, 30, f"the runner to start (log: {self.log.read_text()[-2000:]})")
        return self

    def _healthy(self) -> bool:
        assert self.process and self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def post_events(self, body: dict) -> int:
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        url = f"http://127.0.0.1:{self.port}/events"
        request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)

    def kill_9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill_9()

    def mails(self) -> list[bytes]:
        return maildir_messages(self.data_dir / "mail")


def test_kill_9_during_the_wait_loses_nothing_and_sends_once(tmp_path: Path) -> None:
    runner = Runner(tmp_path, template_root_with(tmp_path, SHORT_WAIT))
    store = Container(Settings(data_dir=runner.data_dir))
    add_confirmed(store, "ann@example.com")
    runner.start()
    try:
        started = time.time()
        assert runner.post_events(event("ann@example.com", "cart_abandoned", started, "cart-1",
                                        items=CART)) == 202  # fmt: skip
        run = wait_for(lambda: _runs(store), 10, "the run to be stored")[0]
        assert run["state"] == WAITING
        runner.kill_9()  # mid-wait: nothing sent yet, the pending step is only in the store
        assert runner.mails() == [] and time.time() < started + WAIT_S, "the kill came too late"
        time.sleep(max(0.0, started + WAIT_S + 0.5 - time.time()))  # due while nobody runs

        runner.start()  # the restarted scheduler sweeps at once
        [mail] = wait_for(runner.mails, 30, "the cart mail after the restart")
        parsed = email.message_from_bytes(mail, policy=email.policy.default)
        assert "Blue mug" in parsed.get_body(("html",)).get_content()
        wait_for(lambda: _runs(store)[0]["state"] == SENT, 10, "the run to be marked sent")
        runner.kill_9()  # and once more after the mail: a restart must not send it again
        runner.start()
        time.sleep(1.5)  # several sweeps
        assert len(runner.mails()) == 1
    finally:
        runner.stop()


def _runs(store: Container) -> list[dict]:
    return [d for _, d in store.documents.query("trigger_runs")]


# --- in-process: a sweep that dies half-way, and two sweeps at once --------------------------
class FailingAnalytics:
    """The bus as a Publisher, except that analytics publishes fail while `armed` (the moment
    a sweep dies: after the render request is out, before the run is marked sent)."""

    def __init__(self, bus: Publisher) -> None:
        self._bus = bus
        self.armed = False

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        if self.armed and topic == topology.ANALYTICS_EVENTS:
            raise TransientError("publisher unreachable (simulated crash)")
        return self._bus.publish(topic, messages)


@pytest.fixture
def local(local_settings):
    clock, mailer = FakeClock(), RecordingMailer()
    settings = replace(local_settings, events_api_key=API_KEY)
    container = Container(settings, meter=OperationMeter(), clock=clock,
                          overrides={"mailer": mailer})  # fmt: skip
    publisher = FailingAnalytics(container.bus)
    container.__dict__["publisher"] = publisher
    bootstrap.install(container)
    yield container, clock, mailer, publisher
    bootstrap.install(None)


def test_a_sweep_that_dies_after_publishing_is_finished_without_a_second_mail(
    local, function_client
) -> None:
    container, clock, mailer, publisher = local
    add_confirmed(container, "ann@example.com")
    body = event("ann@example.com", "cart_abandoned", clock(), "cart-1", items=CART)
    assert post_events(function_client("events"), body).status_code == 202
    pipeline = Pipeline(container)
    pipeline.drain()
    clock.advance(2 * HOUR)
    publisher.armed = True
    with pytest.raises(TransientError):
        container.triggers.sweep()  # the render request is out; recording the outcome fails
    publisher.armed = False
    [run] = _runs(container)
    assert run["state"] == SENDING
    pipeline.drain()
    assert len(mailer.sent) == 1
    pipeline.sweep()
    assert _runs(container)[0]["state"] == SENDING, "its lease has not lapsed yet"
    clock.advance(container.settings.trigger_lease_s + 1)
    pipeline.sweep()
    [run] = _runs(container)
    assert (run["state"], run["attempts"]) == (SENT, 2)
    assert len(mailer.sent) == 1, "the send ledger (batch id = run id) kept the mail single"


def test_two_sweeps_at_once_take_each_run_once(local, function_client) -> None:
    container, clock, mailer, _ = local
    people = [f"p{i}@example.com" for i in range(20)]
    events = function_client("events")
    for person in people:
        add_confirmed(container, person)
        body = event(person, "cart_abandoned", clock(), f"cart-{person}", items=CART)
        assert post_events(events, body).status_code == 202
    Pipeline(container).drain()
    clock.advance(2 * HOUR)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def sweep() -> None:
        barrier.wait()
        try:
            container.triggers.sweep()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    render = topology.subscriptions_of(topology.RENDER_REQUESTS)[0].name
    published = container.bus.pull(render, 100, lease_s=60)
    assert len(published) == len(people), "each run was handed to the render stage once"
    container.bus.release(render, [d.message_id for d in published])
    Pipeline(container).drain()
    assert sorted(m.recipient for m in mailer.sent) == sorted(people)
