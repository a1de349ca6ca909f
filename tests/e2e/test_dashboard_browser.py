"""The dashboard in a real headless browser (Debian's chromium through selenium): what it shows
equals the warehouse figures, and a person can go campaign list -> campaign -> A/B test ->
deliverability -> growth. Screenshots land in var/screenshots/ for a human look.

Chromium is installed from Debian's packages when missing (CI runs as root); no browser is
ever downloaded by a driver (tests/browser_support.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from browser_support import chromium
from support import REPO

from shared.bootstrap import Container
from shared.cli.cmd_demo import write_demo
from shared.dashboard import formatting as fmt
from shared.dashboard.app import DEFAULT_DAYS
from shared.runner.local_runner import LocalRunner

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]
SCREENSHOTS = REPO / "var" / "screenshots"


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), height=2200) as driver:
        yield driver


@pytest.fixture
def dashboard(make_container: Callable[..., Container]) -> Iterator[tuple[str, Container]]:
    """`make run` on a tmp data dir filled by the demo, without the SMTP sink."""
    container = make_container()
    write_demo(container, time.time())
    runner = LocalRunner(container, with_smtp_sink=False).start()
    yield f"http://{container.settings.host}:{runner.http_port}/dashboard", container
    runner.stop()


def shot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(max(800, height + 40), 6000))
    assert driver.save_screenshot(str(path))
    return path


def sign_in(driver, base: str, key: str) -> None:
    """The dashboards are behind the console's sign-in."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/sign-in")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "sign-in").click()
    # Wait for the redirect: a navigation straight after the click can cancel the POST, and
    # the next page would then be the sign-in form again.
    deadline = time.monotonic() + 30
    while "/sign-in" in driver.current_url and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "/sign-in" not in driver.current_url, "signing in did not leave the sign-in page"


def arrived(driver, ready: Callable[[], bool], what: str) -> None:
    """Wait until the page a click navigated to is the one on screen (`ready`)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (NoSuchElementException, StaleElementReferenceException):
            pass  # the page is between loads
        time.sleep(0.1)
    raise AssertionError(f"the click did not lead to {what}: {driver.current_url}")


def figure(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text.strip()


def test_campaign_list_to_ab_test_to_deliverability(browser, dashboard) -> None:
    from selenium.webdriver.common.by import By

    base, container = dashboard
    figures = container.dashboards
    ab_id = "demo-summer-sale-ab"
    sign_in(browser, base, container.settings.admin_api_key)
    browser.get(base + "/")
    assert browser.title.startswith("Campaigns")
    row = f"tr[data-campaign='{ab_id}']"
    summary = figures.campaign(ab_id)
    assert figure(browser, f"{row} [data-figure='sent']") == fmt.number(summary.sent)
    assert figure(browser, f"{row} [data-figure='click_rate']") == fmt.percent(summary.click_rate)
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr[data-campaign]")) == len(
        figures.campaigns()
    )
    shot(browser, "dashboard-campaigns")

    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    arrived(browser, lambda: bool(figure(browser, "#campaign-name")), "the campaign page")
    assert figure(browser, "#campaign-name") == summary.name
    for key in ("sent", "delivered", "bounces", "complaints", "unique_opens", "unique_clicks"):
        assert figure(browser, f"[data-figure='{key}'] .value") == fmt.number(getattr(summary, key))
    for key in ("open_rate", "click_rate", "click_to_open_rate", "complaint_rate"):
        assert figure(browser, f"[data-figure='{key}'] .value") == fmt.percent(
            getattr(summary, key)
        )
    assert browser.find_elements(By.CSS_SELECTOR, "#over-time svg")

    ab = figures.ab_results(ab_id)
    for v in ab.variants:
        cells = f"#ab-table tr[data-variant='{v.variant}']"
        assert figure(browser, f"{cells} [data-figure='unique_clicks']") == fmt.number(
            v.unique_clicks
        )
        assert figure(browser, f"{cells} [data-figure='click_rate']").startswith(
            fmt.percent(v.click_rate)
        )
    assert [v.variant for v in ab.variants] == ["A", "B"]
    assert browser.find_elements(By.CSS_SELECTOR, "#ab svg") and figure(browser, "#verdict")
    shot(browser, "dashboard-campaign")

    browser.find_element(By.LINK_TEXT, "Deliverability").click()
    arrived(browser, lambda: "/deliverability" in browser.current_url, "the deliverability page")
    assert browser.title.startswith("Deliverability")
    gmail = [d for d in figures.deliverability() if d.mailbox_provider == "gmail"]
    sent = sum(d.sent for d in gmail if (time.time() - time.mktime(d.day.timetuple())) < 56 * 86400)
    assert figure(browser, "tr[data-provider='gmail'] [data-figure='sent']") == fmt.number(sent)
    complaints_chart = browser.find_element(By.CSS_SELECTOR, "#complaints svg").get_attribute(
        "innerHTML"
    )
    assert "0.3% mail gets blocked" in complaints_chart and "0.1% stay below" in complaints_chart
    assert browser.find_elements(By.CSS_SELECTOR, "#bounces svg")
    shot(browser, "dashboard-deliverability")

    browser.find_element(By.LINK_TEXT, "Subscribers").click()
    growth = figures.growth()
    since = datetime.now(UTC).date() - timedelta(days=DEFAULT_DAYS - 1)  # the page's default
    net_change = sum(d.net_change for d in growth if d.day >= since)
    assert net_change and figure(browser, "[data-figure='net_change'] .value") == fmt.number(
        net_change
    )
    assert browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    shot(browser, "dashboard-growth")


def test_an_unknown_campaign_reads_as_a_page_not_a_stack_trace(browser, dashboard) -> None:
    base, container = dashboard
    sign_in(browser, base, container.settings.admin_api_key)
    browser.get(base + "/campaigns/no-such-campaign")
    assert figure(browser, "#error-message") == "no campaign 'no-such-campaign'"
    assert "Traceback" not in browser.page_source
