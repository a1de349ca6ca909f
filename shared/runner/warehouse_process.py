"""The local warehouse's own process, as BigQuery is a service of its own: it merges landing
parts into Parquet, and answers the pipeline's warehouse queries (warehouse_service.py).

Done inside the function processes, both loaded DuckDB (~55 MB of code and buffers) into
whichever process appended the 64th part or asked first, on top of the batch it was rendering
or sending: those were the last memory peaks of a long campaign that a short one never reached.
LocalRunner starts this process. While it holds the compactor lock, appends leave merging to
it; while it serves, the pipeline's queries go to it. When it is gone (tests, the CLI, a crash)
both happen in-process again, so nothing depends on it running.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from shared import settings as settings_module
from shared.adapters.local.duckdb_warehouse import LANDING_PARTS, DuckDbWarehouse
from shared.logs import configure_logging

log = logging.getLogger("mailpipe.warehouse_process")

POLL_S = 0.5
MAX_RETRY_PAUSE_S = 60.0  # between attempts at a merge that keeps failing
SERVE_ATTEMPTS = 20  # a previous owner's socket goes a moment after its lock


def compact_until(
    warehouse: DuckDbWarehouse, stop: threading.Event, parent: int, serve: bool = False
) -> None:
    """Take the compactor lock, then (with `serve`) answer queries, and merge whenever
    LANDING_PARTS landing parts have gathered; until `stop` is set or the parent process is
    gone. It never waits on its lock, and looks for its runner between merges, so a kill -9 of
    the runner does not leave it behind."""

    def alive() -> bool:
        return not stop.is_set() and os.getppid() == parent

    while alive():
        with warehouse.compactor_lock() as held:
            if held:
                if serve:
                    _serve(warehouse, stop)
                _merge_while(warehouse, stop, alive)
                return
        stop.wait(POLL_S)  # another process has this warehouse (a runner not yet gone)


def _serve(warehouse: DuckDbWarehouse, stop: threading.Event) -> None:
    for _ in range(SERVE_ATTEMPTS):
        try:
            warehouse.serve_queries()
            return
        except OSError as exc:
            error = exc
        stop.wait(0.1)
    log.warning("not serving warehouse queries (functions query in-process): %s", error)


def _merge_while(
    warehouse: DuckDbWarehouse, stop: threading.Event, alive: Callable[[], bool]
) -> None:
    pause = POLL_S
    while not stop.wait(pause) and alive():
        if warehouse.landing_count() < LANDING_PARTS:
            continue
        try:
            warehouse.merge_landing()
            pause = POLL_S
        except Exception:  # the parts stay as they are, and queries read them as they are
            pause = min(pause * 2, MAX_RETRY_PAUSE_S)
            log.exception("merging landing parts failed; trying again in %.0f s", pause)


def main() -> None:
    """python -m shared.runner.warehouse_process [RUNNER_PID]"""
    # Given by the runner, not read here: by now the runner may be gone (and init our parent).
    parent = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    settings = settings_module.load()
    configure_logging(settings.log_level, human=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    warehouse = DuckDbWarehouse(settings.warehouse_dir, snapshot_reads=False)
    compact_until(warehouse, stop, parent, serve=True)


if __name__ == "__main__":
    main()
