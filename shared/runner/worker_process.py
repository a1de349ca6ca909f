"""One extra local "function instance": bus workers for every Pub/Sub-triggered function, in
their own process (and so their own GIL). Started by LocalRunner when worker_processes > 1; it
reads the same MAILPIPE_* settings, stops on SIGTERM or when its runner (the pid it is given
on the command line) dies, and leaves its counted operations in <data dir>/meters/<pid>.json
for the benchmark's cost figures."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from dataclasses import asdict

from shared import bootstrap
from shared import settings as settings_module
from shared.bootstrap import Container
from shared.logs import configure_logging
from shared.metering import OperationMeter
from shared.runner.functions_host import FunctionsHost, prepare_bus_worker_host

PARENT_CHECK_S = 1.0


def write_meter(container: Container) -> None:
    folder = container.settings.data_dir / "meters"
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = {name: asdict(t) for name, t in container.meter.snapshot().items()}
    (folder / f"{os.getpid()}.json").write_text(json.dumps(snapshot))


def main() -> None:
    settings = settings_module.load()
    configure_logging(settings.log_level, human=True)
    prepare_bus_worker_host()
    container = Container(settings, meter=OperationMeter())
    bootstrap.install(container)
    host = FunctionsHost(container.meter)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    workers = host.bus_workers(container.bus, settings, 10, stop)
    for worker in workers:
        worker.start()
    # Given by the runner, not read here: by now the runner may be gone (and init our parent).
    parent = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    while not stop.wait(PARENT_CHECK_S):
        if os.getppid() != parent:  # the runner died (kill -9): do not run on alone
            stop.set()
    for worker in workers:
        worker.join(timeout=30)
    container.close()  # QUIT on the pooled SMTP connections
    write_meter(container)


if __name__ == "__main__":
    main()
