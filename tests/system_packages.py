"""Debian packages that some tests drive for real (chromium, spamassassin), installed once.

`make test` runs this before pytest, so the suites never race each other for dpkg's lock; a
test that still finds its program missing calls `ensure()` itself. Installing needs root and
apt-get (CI runs as root on Debian); elsewhere it says so and the test fails, plainly.

    python tests/system_packages.py            # install every package below that is missing
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# package -> a file it installs (present = nothing to do)
PACKAGES: dict[str, str] = {
    "chromium": "/usr/bin/chromium",
    "chromium-driver": "/usr/bin/chromedriver",
    "spamassassin": "/usr/bin/spamassassin",
}
_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
# Wait for another apt-get (a parallel test, unattended upgrades) instead of failing at once.
_APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "-q"]


def missing(packages: list[str]) -> list[str]:
    return [name for name in packages if not Path(PACKAGES[name]).exists()]


def ensure(packages: list[str]) -> str | None:
    """Install what is missing of `packages`; None when all are there, else why not."""
    wanted = missing(packages)
    if not wanted:
        return None
    if not shutil.which("apt-get"):
        return f"{', '.join(wanted)} missing and apt-get is not available to install it"
    install = [*_APT, "install", "--no-install-recommends", *wanted]
    if subprocess.run(install, env=_ENV, capture_output=True).returncode != 0:
        subprocess.run([*_APT, "update"], env=_ENV, capture_output=True, check=False)
        done = subprocess.run(install, env=_ENV, capture_output=True, text=True)
        if done.returncode != 0:
            return f"could not install {', '.join(wanted)}: {done.stderr[-2000:]}"
    return None


def main() -> int:
    problem = ensure(list(PACKAGES))
    if problem:
        # Not fatal here: the tests that need a package fail with this reason themselves.
        print(f"system packages: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
