"""Emulators the contract tests start themselves, each on a free port, and stop again.

- Firestore: the npm package @firestore-emulator/server (a gRPC emulator), installed once
  into .cache/firestore-emulator at the repo root and reused; the official client reaches it
  through FIRESTORE_EMULATOR_HOST.
- Cloud Storage: gcp-storage-emulator (PyPI), in-process.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gcp_storage_emulator.server import create_server

from shared.topology import REPO_ROOT

FIRESTORE_PACKAGE = "@firestore-emulator/server"
FIRESTORE_VERSION = "0.3.15"
FIRESTORE_CACHE = REPO_ROOT / ".cache" / "firestore-emulator"
LAUNCHER = Path(__file__).with_name("firestore_emulator.js")
START_TIMEOUT_S = 30.0


def install_firestore_emulator(cache: Path = FIRESTORE_CACHE) -> Path:
    """node_modules with the pinned emulator, installed on first use (under a file lock, so
    parallel test workers install once)."""
    modules = cache / "node_modules"
    manifest = modules / FIRESTORE_PACKAGE / "package.json"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(manifest) != FIRESTORE_VERSION:
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is needed to install the Firestore emulator")
            subprocess.run(
                [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund",
                 "--ignore-scripts", "--no-save", f"{FIRESTORE_PACKAGE}@{FIRESTORE_VERSION}"],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
    return modules


def _installed_version(manifest: Path) -> str:
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return ""


@contextmanager
def firestore_emulator() -> Iterator[str]:
    """host:port of a fresh @firestore-emulator/server, stopped afterwards."""
    modules = install_firestore_emulator()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed to run the Firestore emulator")
    env = {**os.environ, "NODE_PATH": str(modules)}
    process = subprocess.Popen(
        [node, str(LAUNCHER)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("listening "):
            raise RuntimeError(f"Firestore emulator did not start: {line}{_rest(process)}")
        host = f"127.0.0.1:{int(line.split()[1])}"
        wait_for_port(host)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _rest(process: subprocess.Popen[str]) -> str:
    process.kill()
    _out, err = process.communicate(timeout=10)
    return err


def wait_for_port(host: str, timeout_s: float = START_TIMEOUT_S) -> None:
    address, port = host.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((address, int(port)), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def storage_emulator() -> Iterator[str]:
    """http://host:port of an in-memory gcp-storage-emulator, stopped afterwards."""
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    try:
        port = server._api._httpd.server_address[1]  # the port the OS chose
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
