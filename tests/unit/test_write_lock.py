"""WriteLock: one writer at a time across threads and processes, a clear TransientError when
the turn does not come, and a lock that dies with the process holding it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.adapters.local.write_lock import WriteLock
from shared.domain.errors import TransientError
from shared.topology import REPO_ROOT

HOLDER = """
import sys, time
from pathlib import Path
from shared.adapters.local.write_lock import WriteLock
with WriteLock(Path(sys.argv[1])).hold():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def holder(database: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the lock for `seconds`, once it has printed "held"."""
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(database), str(seconds)],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_threads_take_turns(tmp_path: Path) -> None:
    lock = WriteLock(tmp_path / "db.sqlite3")
    total = [0]

    def add() -> None:
        for _ in range(200):
            with lock.hold():
                seen = total[0]
                time.sleep(0)  # let another thread run inside, if it could get in
                total[0] = seen + 1

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert total[0] == 800


def test_a_lock_another_process_keeps_is_a_transient_error(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    child = holder(database, 5)
    try:
        started = time.monotonic()
        lock = WriteLock(database, timeout_s=0.3)
        with pytest.raises(TransientError, match="another process"), lock.hold():
            pass
        assert time.monotonic() - started < 3
    finally:
        child.kill()
        child.wait()


def test_the_lock_is_free_once_its_holder_is_killed(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    child = holder(database, 60)
    child.kill()  # SIGKILL: no chance to unlock
    child.wait()
    with WriteLock(database, timeout_s=2).hold():
        pass
