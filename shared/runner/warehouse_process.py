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
import threading

from shared import settings as settings_module
from shared.adapters.local.duckdb_warehouse import LANDING_PARTS, DuckDbWarehouse
from shared.logs import configure_logging

log = logging.getLogger("mailpipe.compactor")

POLL_S = 0.5


def compact_until(warehouse: DuckDbWarehouse, stop: threading.Event, parent: int) -> None:
    """Merge whenever LANDING_PARTS landing parts have gathered, until `stop` is set or the
    parent process is gone (a kill -9 of the runner must not leave this one behind)."""
    with warehouse.compactor_lock():
        while not stop.wait(POLL_S) and os.getppid() == parent:
            if warehouse.landing_count() < LANDING_PARTS:
                continue
            try:
                warehouse.merge_landing()
            except Exception:  # the parts stay as they are, and queries read them as they are
                log.exception("merging landing parts failed; will try again")


def main() -> None:
    settings = settings_module.load()
    configure_logging(settings.log_level, human=True)
    warehouse = DuckDbWarehouse(settings.warehouse_dir, snapshot_reads=False)
    try:
        warehouse.serve_queries()
    except OSError as exc:  # another runner's service has this warehouse: functions ask it
        log.warning("not serving warehouse queries: %s", exc)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    compact_until(warehouse, stop, os.getppid())


if __name__ == "__main__":
    main()
