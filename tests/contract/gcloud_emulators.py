"""Run a command with the official gcloud Firestore and Pub/Sub emulators started, so the
contract suites also run against them (they add their `firestore-gcloud` / `pubsub-gcloud`
parameters when FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST are set):

    .venv/bin/python tests/contract/gcloud_emulators.py -- .venv/bin/python -m pytest tests/contract

Each emulator gets a free port on 127.0.0.1 and is stopped afterwards. An emulator whose
component (google-cloud-cli-firestore-emulator / -pubsub-emulator, and java) is not installed
is left out with a note; the command still runs. Exits with the command's status.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

START_TIMEOUT_S = 60.0


def sdk_root() -> Path | None:
    gcloud = shutil.which("gcloud")
    return Path(gcloud).resolve().parent.parent if gcloud else None


def emulator_commands(root: Path, port: int) -> dict[str, list[str]]:
    host = ["--host=127.0.0.1", f"--port={port}"]
    return {
        "FIRESTORE_EMULATOR_HOST": [
            str(root / "platform/cloud-firestore-emulator/cloud_firestore_emulator"), "start",
            *host,
        ],
        "PUBSUB_EMULATOR_HOST": [
            str(root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"), *host,
        ],
    }  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def emulator(command: list[str], port: int) -> Iterator[str]:
    """host:port once the emulator answers HTTP on it; its process group is ended afterwards."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    try:
        wait_until_serving(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait_until_serving(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"emulator exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"emulator on port {port} did not start in {START_TIMEOUT_S:.0f} s")


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    root = sdk_root()
    env = dict(os.environ)
    with ExitStack() as stack:
        for variable, args in (emulator_commands(root, 0) if root else {}).items():
            if not Path(args[0]).exists() or not shutil.which("java"):
                print(f"gcloud_emulators: no emulator for {variable}; left out", file=sys.stderr)
                continue
            port = free_port()
            started = time.monotonic()
            env[variable] = stack.enter_context(emulator(emulator_commands(root, port)[variable],
                                                         port))  # fmt: skip
            took = time.monotonic() - started
            print(f"gcloud_emulators: {variable}={env[variable]} ({took:.1f} s)", file=sys.stderr)
        return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
