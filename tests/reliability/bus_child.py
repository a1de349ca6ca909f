"""The process that test_sqlite_bus kills with SIGKILL, and the one that drains after it.

    python bus_child.py run DIR     publish and consume on DIR/bus.db until killed
    python bus_child.py drain DIR   consume what is left, exit 0 once nothing is pending

Payloads are "m<index>" with indices in publish order. Each payload is appended to
DIR/published.log as soon as `publish` returns, and to DIR/delivered-<mode>.log as soon as a
delivery succeeds; single small O_APPEND writes, so a kill never leaves half a line that
matters.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from shared.adapters.local.bus_worker import BusWorker
from shared.adapters.local.sqlite_bus import Delivery, SqliteBus
from shared.ports import OutboundMessage
from shared.topology import RetryPolicy, Subscription

TOPIC = "jobs"
# A 1 s lease so the drain does not wait long for the killed process's leases to run out;
# many attempts so that nothing dead-letters.
SUBSCRIPTION = Subscription(
    "work-on-jobs", TOPIC, "work", RetryPolicy(0.05, 0.2, 50), ack_deadline_s=1
)
BATCH = 50


def _appender(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _deliver_into(log_fd: int, slow: bool):
    def deliver(delivery: Delivery) -> bool:
        if slow:
            time.sleep(0.001)  # keep a backlog, so the kill leaves work for the drain
        if int(delivery.data[1:]) % 7 == 0 and delivery.attempt == 1:
            return False  # some messages are in backoff when the kill comes
        os.write(log_fd, delivery.data + b"\n")
        return True

    return deliver


def run(directory: Path) -> None:
    bus = SqliteBus(directory / "bus.db", [SUBSCRIPTION])
    deliver = _deliver_into(_appender(directory / "delivered-run.log"), slow=True)
    BusWorker(bus, SUBSCRIPTION.name, deliver, poll_interval_s=0.01).start()
    published = _appender(directory / "published.log")
    start = 0
    while True:  # until SIGKILL
        payloads = [f"m{i}".encode() for i in range(start, start + BATCH)]
        bus.publish(TOPIC, [OutboundMessage(p, {"i": p.decode()}) for p in payloads])
        os.write(published, b"".join(p + b"\n" for p in payloads))
        start += BATCH
        time.sleep(0.002)


def drain(directory: Path) -> int:
    bus = SqliteBus(directory / "bus.db", [SUBSCRIPTION])
    deliver = _deliver_into(_appender(directory / "delivered-drain.log"), slow=False)
    stop = threading.Event()
    worker = BusWorker(bus, SUBSCRIPTION.name, deliver, poll_interval_s=0.01, stop_event=stop)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        depth = bus.depths()[SUBSCRIPTION.name]
        if depth["ready"] + depth["leased"] + depth["backoff"] + depth["dead_lettered"] == 0:
            worker.stop()
            return 0
        time.sleep(0.05)
    worker.stop()
    return 3


if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode == "run":
        run(folder)
    else:
        sys.exit(drain(folder))
