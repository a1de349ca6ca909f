"""Bus workers for the import function alone: what the CLI (and the scale bench) runs while it
follows an import locally. With `make run` up too those are more consumers, which is harmless:
a chunk delivered twice changes nothing.

One worker is a thread in the calling process. Several (`processes` > 1) are processes of
their own, like Cloud Run instances, so that the chunks an import has in flight
(MAILPIPE_IMPORT_PARALLEL_CHUNKS) are parsed on every core instead of taking turns on one GIL;
they read the same settings and stop when told to or when the process that started them dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.adapters.local.bus_worker import BusWorker
    from shared.settings import Settings

PARENT_CHECK_S = 1.0


class ImportWorker(Protocol):
    def stop(self, timeout: float | None = None) -> None: ...


def import_bus_worker(
    bus: Any, poll_interval_s: float, stop_event: threading.Event | None = None
) -> BusWorker:
    """A bus worker (not yet started) delivering import steps to the import function."""
    from shared import topology
    from shared.adapters.local.bus_worker import BusWorker
    from shared.runner.functions_host import function_app, pusher

    function = topology.function("imports")
    subscription = topology.subscriptions_of(topology.SUBSCRIBER_IMPORTS)[0]
    push = pusher(function_app(function), subscription.topic)
    return BusWorker(bus, subscription.name, lambda d: 200 <= push(d) < 300, batch=1,
                     poll_interval_s=poll_interval_s, stop_event=stop_event)  # fmt: skip


class ImportProcesses:
    """Worker processes running `python -m shared.runner.import_worker`."""

    def __init__(self, settings: Settings, processes: int, poll_interval_s: float) -> None:
        from shared.settings import child_environ

        env = {**child_environ(settings), "MAILPIPE_BUS_POLL_INTERVAL_S": str(poll_interval_s)}
        command = [sys.executable, "-m", "shared.runner.import_worker", str(os.getpid())]
        self.processes = [subprocess.Popen(command, env=env) for _ in range(processes)]

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM each; the chunk in progress finishes first (a kill after `timeout` would
        leave it to be delivered again, which changes nothing)."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_import_worker(
    bus: Any,
    poll_interval_s: float = 0.02,
    settings: Settings | None = None,
    processes: int = 1,
) -> ImportWorker:
    """Started; `stop()` it when done. `processes` > 1 (and `settings`, for the children):
    that many worker processes instead of a thread here."""
    if processes > 1 and settings is not None:
        return ImportProcesses(settings, processes, poll_interval_s)
    worker = import_bus_worker(bus, poll_interval_s)
    worker.start()
    return worker


def main() -> None:
    # First, before the imports that take a second: a stop asked for while this process is
    # still starting (an import that finished meanwhile) ends it cleanly, not by the signal.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from shared import bootstrap
    from shared import settings as settings_module
    from shared.bootstrap import Container
    from shared.logs import configure_logging
    from shared.runner.functions_host import prepare_bus_worker_host

    settings = settings_module.load()
    configure_logging(settings.log_level, human=True)
    prepare_bus_worker_host()
    container = Container(settings)
    bootstrap.install(container)
    worker = import_bus_worker(container.bus, settings.bus_poll_interval_s, stop)
    worker.start()
    parent = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    while not stop.wait(PARENT_CHECK_S):
        if os.getppid() != parent:  # the process that started us died: do not run on alone
            stop.set()
    worker.join(timeout=60)
    container.close()


if __name__ == "__main__":
    main()
