"""Debian packages a test needs (chromium, spamassassin): installed with apt-get when missing,
as `make test` runs as root in CI. `apt-get update` runs at most once per test process, and
only when an install fails without it. Nothing is downloaded any other way."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
_updated = False


def apt_install(paths: tuple[Path, ...], packages: tuple[str, ...]) -> str | None:
    """Install `packages` unless every file in `paths` exists. None when they are there, else
    the reason they cannot be (no apt-get, not root, or apt's own error), for the test to say."""
    global _updated
    if all(p.exists() for p in paths):
        return None
    if not shutil.which("apt-get"):
        return f"{', '.join(packages)} missing and apt-get is not available to install it"
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    started = time.monotonic()
    done = subprocess.run(install, env=_ENV, capture_output=True, text=True)
    if done.returncode != 0 and not _updated:
        _updated = True
        subprocess.run(["apt-get", "update"], env=_ENV, capture_output=True, check=False)
        done = subprocess.run(install, env=_ENV, capture_output=True, text=True)
    if done.returncode != 0:
        return f"could not install {', '.join(packages)}: {done.stderr[-2000:]}"
    print(f"installed {', '.join(packages)} in {time.monotonic() - started:.0f}s")
    return None
