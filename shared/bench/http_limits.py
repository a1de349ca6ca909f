"""`make bench-http`: the runner's memory under a burst of oversized requests (issue 16).

Starts `mailpipe run` on a scratch data directory, notes the runner process's resident memory
(VmRSS), then sends what once took it from 210 MB to 586 MB: one 200 MB body and a series of
20 MB bodies to routes that take no body (`/t/o/...`, `/confirm`), plus bodies just under the
server's 10 MB limit (which waitress buffers in a temporary file before the app refuses them).
Prints and writes (`--out`) the answers seen and RSS at the start, after each phase and at
the end. The goal: the end within 50 MB of the start.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared import settings as settings_module

CHUNK = b"\0" * (1024 * 1024)
MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def send_body(port: int, request_line: str, size: int, timeout_s: float = 30) -> str:
    """Send a request declaring and (as far as the server lets us) sending `size` bytes; the
    status code it answered, or what went wrong."""
    head = f"{request_line}\r\nHost: bench\r\nConnection: close\r\nContent-Length: {size}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        try:
            conn.sendall(head.encode())
            sent = 0
            while sent < size:
                piece = CHUNK[: min(len(CHUNK), size - sent)]
                conn.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all: what we want
        try:
            answer = conn.recv(200)
        except (ConnectionResetError, TimeoutError):
            return "no answer"
    parts = answer.split(b" ", 2)
    return parts[1].decode() if answer.startswith(b"HTTP/") and len(parts) > 1 else "no answer"


def wait_healthy(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the runner did not answer /healthz")


PHASES: list[tuple[str, list[tuple[str, int]]]] = [
    ("one 200 MB body to /t/o", [("GET /t/o/bench-token HTTP/1.1", 200 * MB)]),
    (
        "20 x 20 MB bodies to /t/o and /confirm",
        [("GET /t/o/bench-token HTTP/1.1", 20 * MB), ("GET /confirm?token=x HTTP/1.1", 20 * MB)]
        * 10,
    ),
    (
        "20 x 9.5 MB bodies to /t/o and /confirm (under the server limit)",
        [
            ("GET /t/o/bench-token HTTP/1.1", 19 * MB // 2),
            ("GET /confirm?token=x HTTP/1.1", 19 * MB // 2),
        ]
        * 10,
    ),
]


def run(port: int, smtp_port: int) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="mailpipe-bench-http-")
    settings = replace(settings_module.load(), port=port, smtp_port=smtp_port,
                       data_dir=Path(data_dir))  # fmt: skip
    env = settings_module.child_environ(settings)
    command = [sys.executable, "-m", "shared.cli.main", "run"]
    runner = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_healthy(port)
        time.sleep(2)  # let start-up settle
        report: dict[str, Any] = {"start_rss_mb": round(rss_mb(runner.pid), 1), "phases": []}
        peak = report["start_rss_mb"]
        for name, requests in PHASES:
            answers = Counter(send_body(port, line, size) for line, size in requests)
            rss = round(rss_mb(runner.pid), 1)
            peak = max(peak, rss)
            report["phases"].append({"phase": name, "answers": dict(answers), "rss_mb": rss})
        time.sleep(2)
        report["end_rss_mb"] = round(rss_mb(runner.pid), 1)
        report["peak_rss_mb"] = max(peak, report["end_rss_mb"])
        report["growth_mb"] = round(report["end_rss_mb"] - report["start_rss_mb"], 1)
        report["within_50_mb"] = report["growth_mb"] <= 50
        return report
    finally:
        os.killpg(runner.pid, signal.SIGTERM)
        runner.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    settings = settings_module.load()
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--smtp-port", type=int, default=settings.smtp_port)
    parser.add_argument("--out", default="var/bench-http.json")
    args = parser.parse_args()
    report = run(args.port, args.smtp_port)
    print(f"runner RSS at start {report['start_rss_mb']} MB")
    for phase in report["phases"]:
        print(f"  {phase['phase']}: answers {phase['answers']}, RSS {phase['rss_mb']} MB")
    print(f"at the end {report['end_rss_mb']} MB (peak {report['peak_rss_mb']} MB): "
          f"{report['growth_mb']:+} MB, within 50 MB: {report['within_50_mb']}")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    sys.exit(0 if report["within_50_mb"] else 1)


if __name__ == "__main__":
    main()
