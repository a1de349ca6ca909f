"""The local warehouse's compactor: merges landing parts into Parquet, in a process of its own.

BigQuery organizes its own storage; locally that work is DuckDB's, and done inline it ran in
whichever function process appended the 64th part, on top of the batch that process was
rendering or sending (DuckDB's code and a merge's buffers, the last memory peaks of a long
campaign that a short one never reached). LocalRunner starts this process; while it holds the
warehouse's compactor lock, appends leave the merging to it. When it is gone (tests, the CLI,
a crash) appends merge inline again, so nothing depends on it running.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from shared import settings as settings_module
from shared.adapters.local.duckdb_warehouse import LANDING_PARTS, DuckDbWarehouse
from shared.bootstrap import Container
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
    warehouse = Container(settings).warehouse
    assert isinstance(warehouse, DuckDbWarehouse), "the compactor is for the local warehouse"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    compact_until(warehouse, stop, os.getppid())


if __name__ == "__main__":
    main()
