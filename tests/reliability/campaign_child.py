"""The `mailpipe run` that test_exactly_once kills with SIGKILL, and the one that restarts it.

    python campaign_child.py DATA_DIR SMTP_PORT

Runs the whole local pipeline (bus workers, functions, scheduler; no SMTP sink: the test
process owns the sink, so it survives the kill) on DATA_DIR until SIGKILL or SIGTERM.

A restarted runner is the only consumer of its data directory, so leases the killed process
held are stale: it hands them back first (what a restart of `make run` must do), instead of
waiting out the subscriptions' ack deadlines (up to 9 minutes).
"""

from __future__ import annotations

import sqlite3
import sys
from collections import defaultdict
from pathlib import Path

from shared.adapters.local.sqlite_bus import SqliteBus
from shared.bootstrap import Container
from shared.runner.local_runner import LocalRunner
from shared.settings import Settings
from shared.topology import REPO_ROOT


def settings(data_dir: Path, smtp_port: int, http_port: int = 0) -> Settings:
    return Settings(
        data_dir=data_dir,
        template_root=REPO_ROOT / "templates",
        port=http_port,
        smtp_port=smtp_port,
        bus_min_backoff_s=0.05,
        bus_max_backoff_s=0.2,
        bus_max_attempts=1000,  # nothing dead-letters while a lease left by the kill runs out
        bus_poll_interval_s=0.01,
        campaign_page_size=100,
        campaign_pages_per_run=5,
        campaign_lease_s=3.0,
        campaign_stall_s=3.0,
        scheduler_interval_s=1.0,
        send_lease_s=2.0,
    )


def release_stale_leases(bus: SqliteBus, path: Path) -> int:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT subscription, message_id FROM deliveries WHERE state = 'leased'"
        ).fetchall()
    by_subscription: dict[str, list[str]] = defaultdict(list)
    for subscription, message_id in rows:
        by_subscription[subscription].append(message_id)
    return sum(bus.release(sub, ids) for sub, ids in by_subscription.items())


def main(data_dir: Path, smtp_port: int) -> None:
    container = Container(settings(data_dir, smtp_port))
    release_stale_leases(container.bus, data_dir / "bus.sqlite3")
    runner = LocalRunner(container, with_smtp_sink=False)
    runner.start()
    print("ready", flush=True)
    runner.serve_forever()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
