"""One extra local "function instance": bus workers for every Pub/Sub-triggered function, in
their own process (and so their own GIL). Started by LocalRunner when worker_processes > 1; it
reads the same MAILPIPE_* settings, stops on SIGTERM or when its parent dies, and leaves its
counted operations in <data dir>/meters/<pid>.json for the benchmark's cost figures."""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import asdict

from shared import bootstrap, topology
from shared import settings as settings_module
from shared.adapters.local.bus_worker import BusWorker
from shared.bootstrap import Container
from shared.logs import configure_logging
from shared.metering import OperationMeter
from shared.runner.allocator import cap_malloc_arenas
from shared.runner.functions_host import (
    FunctionsHost,
    batch_for,
    share_the_gil_sooner,
    workers_for,
)

PARENT_CHECK_S = 1.0


def write_meter(container: Container) -> None:
    folder = container.settings.data_dir / "meters"
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = {name: asdict(t) for name, t in container.meter.snapshot().items()}
    (folder / f"{os.getpid()}.json").write_text(json.dumps(snapshot))


def main() -> None:
    settings = settings_module.load()
    configure_logging(settings.log_level, human=True)
    share_the_gil_sooner()
    cap_malloc_arenas()
    container = Container(settings, meter=OperationMeter())
    bootstrap.install(container)
    host = FunctionsHost(container.meter)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    workers = [
        BusWorker(
            container.bus,
            s.name,
            host.deliverer(s),
            batch=batch_for(s, 10),
            poll_interval_s=settings.bus_poll_interval_s,
            stop_event=stop,
        )
        for s in topology.SUBSCRIPTIONS
        for _ in range(workers_for(s, settings.send_workers))
    ]
    for worker in workers:
        worker.start()
    parent = os.getppid()
    while not stop.wait(PARENT_CHECK_S):
        if os.getppid() != parent:  # the runner died (kill -9): do not run on alone
            stop.set()
    for worker in workers:
        worker.join(timeout=30)
    write_meter(container)


if __name__ == "__main__":
    main()
