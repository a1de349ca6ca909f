"""WriteLock: one writer at a time on a SQLite file, handed over at once between the threads
and processes that share it.

SQLite lets one connection write at a time; the others wait in its busy handler, which sleeps
1, 2, 5, 10, 25 ... ms between tries whether or not the lock was freed meanwhile. With a dozen
worker threads in two processes publishing, pulling and acknowledging, most of their time went
into those sleeps (a 2 ms transaction waited 15 ms on average). Writers that take this lock
first queue on a thread lock inside a process and on an flock(2) lock file between processes,
so SQLite's own lock is free whenever they ask for it. A process that dies holding the lock
loses it with its file descriptor; a writer that does not use this lock (a person's sqlite3
shell) is still waited for by SQLite's busy handler.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.domain.errors import TransientError

_FIRST_PAUSE_S = 0.00005
_LONGEST_PAUSE_S = 0.001


class WriteLock:
    """`with lock.hold(): ...` around every write transaction on `database`.

    Not reentrant. Raises TransientError when the lock is not had within `timeout_s`."""

    def __init__(self, database: Path, timeout_s: float = 30.0) -> None:
        self._path = database.with_name(database.name + ".writelock")
        self._timeout_s = timeout_s
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._fd_pid = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        deadline = time.monotonic() + self._timeout_s
        if not self._threads.acquire(timeout=self._timeout_s):
            raise TransientError(f"{self._path.name}: no write turn within {self._timeout_s} s")
        try:
            fd = self._file()
            self._lock_file(fd, deadline)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _file(self) -> int:
        """This process's descriptor of the lock file (a forked child opens its own: a shared
        descriptor would share the lock)."""
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._fd_pid = os.getpid()
        return self._fd

    def _lock_file(self, fd: int, deadline: float) -> None:
        """flock with a deadline: non-blocking tries with pauses of at most a millisecond (only
        one thread per process gets here, so the polling is cheap)."""
        pause = _FIRST_PAUSE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TransientError(
                        f"{self._path.name}: another process kept the lock"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, _LONGEST_PAUSE_S)
            except OSError as exc:
                raise TransientError(f"{self._path.name}: {exc}") from exc

    def close(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None


@contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock(2) on `directory`/.lock, across processes (the runner, the CLI), for
    rewriting the files in it; released with the block or when the process dies."""
    with open(directory / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
