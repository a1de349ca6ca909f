"""What a running `make run` tells the CLI: that it runs, and the settings it runs with.

The runner holds an flock(2) lock on `<data dir>/runner.lock` for as long as it runs (the
kernel drops it when the process dies, `kill -9` included), and writes `<data dir>/runner.json`
with its effective public URL and ports. The CLI asks the lock whether a runner processes this
data directory's bus (a busy runner with a long queue is still a runner), and takes the
runner's public URL for the links it renders itself (`campaign test`), so the two agree without
the user repeating PORT or MAILPIPE_PUBLIC_URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LOCK_NAME = "runner.lock"
INFO_NAME = "runner.json"


@dataclass(frozen=True)
class RunnerInfo:
    """The effective settings of the runner that last ran on a data directory."""

    pid: int
    public_url: str
    host: str
    port: int
    smtp_sink: str  # "host:port" of the SMTP sink, or "" when it is off
    smtp_server: str  # "host:port" mail is sent to
    started_at: float

    @classmethod
    def read(cls, data_dir: Path) -> RunnerInfo | None:
        """The runner file, or None when there is none or it cannot be read."""
        try:
            raw: dict[str, Any] = json.loads((data_dir / INFO_NAME).read_text())
            return cls(**raw)
        except (OSError, ValueError, TypeError):
            return None

    def write(self, data_dir: Path) -> None:
        """Written whole under a temporary name, then renamed: a reader never sees half."""
        target = data_dir / INFO_NAME
        partial = target.with_name(f".{INFO_NAME}.{os.getpid()}")
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(partial, target)


class RunnerLock:
    """Held by the running runner; `running()` tells anyone else whether there is one."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, patience_s: float = 0.5) -> bool:
        """Take the lock; False when another runner (any process) holds it. A CLI probing the
        lock holds it for a moment: that is waited out for `patience_s`."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + patience_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.02)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def running(self) -> bool:
        """True while some runner holds the lock on this data directory."""
        if self._fd is not None:
            return True
        if not self._path.exists():
            return False
        fd = os.open(self._path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        return False


def runner_info(settings: Any, http_port: int, sink: str) -> RunnerInfo:
    smtp_server = f"{settings.smtp_host}:{settings.smtp_port}"
    base = settings.public_url or f"http://{settings.host}:{http_port}"
    return RunnerInfo(
        pid=os.getpid(),
        public_url=base.rstrip("/"),
        host=settings.host,
        port=http_port,
        smtp_sink=sink,
        smtp_server=smtp_server,
        started_at=time.time(),
    )
