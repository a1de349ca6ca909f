"""Debian's chromium, headless, through selenium: installed from Debian's packages when missing
(CI runs as root), never downloaded by a driver. One browser per test session and worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import system_packages

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage")  # fmt: skip


def ensure_chromium() -> None:
    """chromium and its driver from Debian's packages (tests/system_packages.py), or a failure
    saying why not."""
    problem = system_packages.ensure(["chromium", "chromium-driver"])
    if problem:
        pytest.fail(problem)


@contextmanager
def chromium(profile: Path, height: int = 900, extra_flags: tuple[str, ...] = ()) -> Iterator[Any]:
    """A headless chromium driver with its own profile, in a 1280 x `height` window; quit after."""
    ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    window = (f"--window-size=1280,{height}", f"--user-data-dir={profile}")
    for flag in (*FLAGS, *window, *extra_flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def viewport(driver: Any, width: int, height: int = 900) -> None:
    """Lay the page out for a `width` px wide screen (a phone's when narrow), as DevTools'
    device emulation does: a window cannot be made narrower than about 500 px."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600,
    })  # fmt: skip
    time.sleep(0.2)


def page_width(driver: Any, width: int) -> int:
    """The page's scroll width on a `width` px wide screen."""
    viewport(driver, width)
    return int(driver.execute_script("return document.documentElement.scrollWidth"))


def screenshot(driver: Any, path: Path, width: int) -> Path:
    """A full-page PNG at `width` px."""
    path.parent.mkdir(parents=True, exist_ok=True)
    viewport(driver, width)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    viewport(driver, width, min(max(700, int(height)), 6000))
    assert driver.save_screenshot(str(path))
    return path
