"""The console as a person uses it, in headless Debian chromium through selenium: sign in with
the keyboard, create a campaign with a segment and an A/B test (keyboard only), preview both
variants at 600 and 390 px, test-send, send, see the mail in /inbox and the figures on the
campaign page; find and erase a subscriber; import a file; edit a template. Every control on
every page has a label, and focus is visible. Screenshots of each page at 1280 px and 390 px
land in var/screenshots/console-*.png for a human look.

Chromium is installed from Debian's packages when missing (see tests/browser_support.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser_support import chromium
from campaign_support import add_audience
from support import REPO

from shared.bootstrap import Container
from shared.runner.local_runner import LocalRunner

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]
SCREENSHOTS = REPO / "var" / "screenshots"
UNLABELLED = """
return [...document.querySelectorAll('input, select, textarea, button')]
  .filter(e => e.type !== 'hidden')
  .filter(e => !e.getAttribute('aria-label'))
  .filter(e => e.tagName === 'BUTTON' ? !e.textContent.trim() : !(e.labels && e.labels.length))
  .map(e => e.outerHTML.slice(0, 120));
"""
FOCUS_OUTLINE = """
const s = getComputedStyle(document.activeElement);
const e = document.activeElement;
return [e.id || e.tagName, s.outlineStyle, s.outlineWidth];
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with chromium(tmp_path_factory.mktemp("console-profile"), height=1000) as driver:
        yield driver


@pytest.fixture
def console(make_container: Callable[..., Container], tmp_path: Path) -> Iterator[tuple]:
    """`make run` with its SMTP sink on a tmp data dir and a template store of its own, with
    40 confirmed subscribers, half of them on the list "weekly"."""
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    container = make_container(template_root=templates, scheduler_interval_s=1.0)
    add_audience(container, 40, make=lambda i: {"lists": ["weekly"] if i % 2 == 0 else []})
    runner = LocalRunner(container).start()
    base = f"http://{container.settings.host}:{runner.http_port}"
    yield base, container
    runner.stop()


def shot(driver, name: str) -> None:
    """The page at 1280 and 390 px wide, whole height; back to 1280 afterwards."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        driver.set_window_size(width, 900)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(max(700, height + 40), 5000))
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)  # let the preview frames (separate processes) paint at the new size
        assert driver.save_screenshot(str(SCREENSHOTS / f"console-{name}-{width}.png"))
    driver.set_window_size(1280, 1000)


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text.strip()


def not_on_the_page(element) -> bool:
    """Whether `element` is gone: its page was replaced by a navigation."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    return False


def labelled(driver) -> None:
    assert driver.execute_script(UNLABELLED) == [], driver.current_url


def wait_for(
    check: Callable[[], object],
    timeout: float = 60.0,
    what: str = "",
    state: Callable[[], str] = lambda: "",
) -> object:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (NoSuchElementException, StaleElementReferenceException):
            found = None  # the page is between loads (a redirect, its own refresh)
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; {state()}")


def tab_to(driver, element_id: str, limit: int = 200) -> None:
    """Press Tab until `element_id` has the focus (keyboard only), and check it shows."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    for _ in range(limit):
        if driver.switch_to.active_element.get_attribute("id") == element_id:
            focused, style, width = driver.execute_script(FOCUS_OUTLINE)
            assert style != "none" and width != "0px", (focused, style, width)
            return
        ActionChains(driver).send_keys(Keys.TAB).perform()
    raise AssertionError(f"Tab never reached #{element_id}")


def type_keys(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def sign_in_with_the_keyboard(driver, base: str, key: str) -> None:
    from selenium.webdriver.common.keys import Keys

    driver.get(base + "/inbox/")
    driver.delete_all_cookies()  # a session of an earlier test (same host, another port)
    driver.get(base + "/dashboard/campaigns")
    assert "/sign-in" in driver.current_url
    labelled(driver)
    shot(driver, "sign-in")
    driver.execute_script("document.activeElement.blur()")
    tab_to(driver, "key")
    type_keys(driver, key)
    tab_to(driver, "sign-in")
    type_keys(driver, Keys.ENTER)
    wait_for(lambda: driver.current_url.endswith("/dashboard/campaigns"), 20, "the campaign list")


def fill_campaign_with_the_keyboard(driver) -> None:
    """Name, subject with a variable, segment list = weekly, A/B with two subjects."""
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.activeElement.blur()")
    tab_to(driver, "name")
    type_keys(driver, "Autumn news")
    tab_to(driver, "subject")
    type_keys(driver, "Autumn news for {{ first_name }}")
    tab_to(driver, "g0_r0_name")
    type_keys(driver, "weekly")
    tab_to(driver, "ab_enabled")
    type_keys(driver, Keys.SPACE)
    for k, subject in enumerate(("A: leaves are falling", "B: {{ first_name }}, it is autumn")):
        tab_to(driver, f"v{k}_name")
        type_keys(driver, "AB"[k])
        tab_to(driver, f"v{k}_subject")
        type_keys(driver, subject)
    tab_to(driver, "ab_test_fraction")
    type_keys(driver, Keys.BACKSPACE * 4 + "50")
    tab_to(driver, "ab_min_sample")
    type_keys(driver, Keys.BACKSPACE * 4 + "1")


def test_create_preview_test_send_send_and_pick_a_winner(browser, console) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, container = console
    sign_in_with_the_keyboard(browser, base, container.settings.admin_api_key)
    shot(browser, "campaigns-empty")
    browser.get(base + "/dashboard/campaigns/new")
    labelled(browser)
    fill_campaign_with_the_keyboard(browser)
    counted = "#audience-count"
    count = wait_for(lambda: "get B" in text(browser, counted) and text(browser, counted), 20,
                     "the live audience count")  # fmt: skip
    assert str(count).startswith("20 subscribers: ") and "Estimated GCP cost: $0.0000" in str(count)
    shot(browser, "campaign-new")
    tab_to(browser, "create")
    type_keys(browser, Keys.ENTER)

    wait_for(lambda: "/manage" in browser.current_url, 20, "the campaign page")
    campaign_id = browser.current_url.split("/campaigns/")[1].split("/")[0]
    campaign = container.campaign_service.get(campaign_id)
    assert campaign.segment == {"list": "weekly"} and campaign.ab is not None
    subjects = [v["subject"] for v in campaign.ab["variants"]]
    assert subjects == ["A: leaves are falling", "B: {{ first_name }}, it is autumn"]
    assert text(browser, "#campaign-status") == "draft"
    assert text(browser, "#audience-estimate").startswith("20 subscribers")
    assert "preview ok" in text(browser, "#preview-summary")
    frames = browser.find_elements(By.CSS_SELECTOR, ".previews iframe")
    widths = sorted((f.get_attribute("data-variant"), f.size["width"]) for f in frames)
    assert widths == [("A", 390), ("A", 600), ("B", 390), ("B", 600)]
    browser.switch_to.frame(frames[0])
    assert "unsubscribe" in browser.page_source.lower()
    browser.switch_to.default_content()
    labelled(browser)
    shot(browser, "campaign-draft")

    by_id(browser, "to").send_keys("me@example.com")
    by_id(browser, "test-send").submit()
    queued = "Queued [TEST] message to me@example.com"
    wait_for(lambda: queued in browser.page_source, 20, "the test-send message")

    browser.find_element(By.XPATH, "//button[normalize-space()='Send now']").click()
    wait_for(lambda: "is sending" in browser.page_source, 20, "the send")

    estimate = container.audience_estimator.estimate(campaign.segment, campaign.ab, campaign.id)
    cohort = sum(estimate.variants.values())
    assert 0 < cohort < 20 and estimate.remainder == 20 - cohort

    def test_phase_delivered() -> bool:
        browser.refresh()
        sent = browser.find_elements(By.CSS_SELECTOR, "[data-outcome='sent']")
        tested = text(browser, "#campaign-status") == "testing"
        return bool(sent) and tested and sent[0].text == str(cohort)

    state = lambda: f"{container.campaign_service.show(campaign.id)}"  # noqa: E731
    wait_for(test_phase_delivered, 90, f"the test cohort of {cohort} to be sent", state)
    assert browser.find_elements(By.CSS_SELECTOR, "#variant-results tr[data-variant='B']")
    by_id(browser, "winner").send_keys("B")
    browser.find_element(By.XPATH, "//button[normalize-space()='Pick winner']").click()
    wait_for(lambda: "Winner of" in browser.page_source, 20, "the winner flash")

    def all_sent() -> bool:
        browser.refresh()
        sent = browser.find_elements(By.CSS_SELECTOR, "[data-outcome='sent']")
        return bool(sent) and sent[0].text == "20" and text(browser, "#campaign-status") == "sent"

    wait_for(all_sent, 90, "the remainder to be sent", state)
    assert "Winner B" in browser.page_source
    shot(browser, "campaign-sent")

    def in_the_inbox() -> bool:  # the sink stores a message after it answered 250
        browser.get(base + "/inbox/")
        inbox = browser.page_source
        tests = "[TEST] [A] A: leaves are falling" in inbox and "[TEST] [B] B: " in inbox
        return tests and inbox.count("it is autumn") >= 2 and "A: leaves are falling" in inbox

    wait_for(in_the_inbox, 30, "the test sends and the campaign in /inbox")
    browser.get(base + "/dashboard/campaigns")
    assert text(browser, f"tr[data-campaign='{campaign_id}'] [data-field='status']") == "sent"
    shot(browser, "campaigns")


def test_a_refusal_reads_as_the_cli_says_it_next_to_the_field(browser, console) -> None:
    base, container = console
    sign_in_with_the_keyboard(browser, base, container.settings.admin_api_key)
    browser.get(base + "/dashboard/campaigns/new")
    by_id(browser, "name").send_keys("Bad")
    by_id(browser, "g0_r0_kind").send_keys("field")
    by_id(browser, "g0_r0_name").send_keys("shoe_size")
    by_id(browser, "g0_r0_value").send_keys("42")
    by_id(browser, "name").submit()
    message = wait_for(lambda: text(browser, "#segment-error"), 20, "the refusal")
    assert message == (
        "segment.field unknown field 'shoe_size'; use one of email, first_name, frequency, timezone"
    )
    assert by_id(browser, "name").get_attribute("value") == "Bad"  # nothing typed is lost
    shot(browser, "campaign-refused")


def test_find_and_erase_a_subscriber_then_import_a_file(browser, console, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    base, container = console
    sign_in_with_the_keyboard(browser, base, container.settings.admin_api_key)
    browser.get(base + "/dashboard/subscribers?q=Reader7")
    labelled(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#search-results tr[data-subscriber]")
    assert [r.text.split()[0] for r in rows] == ["reader7@example.com"]
    rows[0].find_element(By.TAG_NAME, "a").click()
    shown = wait_for(lambda: text(browser, "#subscriber-email"), 20, "the subscriber page")
    assert shown == "reader7@example.com"
    assert text(browser, "#subscriber-status") == "confirmed"
    labelled(browser)
    shot(browser, "subscriber")
    by_id(browser, "erase-link").click()
    by_id(browser, "confirm").send_keys("reader7@example.com")
    shot(browser, "erase")
    by_id(browser, "confirm").submit()
    wait_for(lambda: "Erased every record of reader7@example.com" in browser.page_source, 20, "")
    assert container.subscribers.find(container.subscribers.id_for("reader7@example.com")) is None
    assert container.suppressions.reason("reader7@example.com") == "erased"

    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text("Email Address,First Name,Groups,Company\n"
                        "new1@example.com,Ann,weekly,Acme\nnot-an-address,Bo,,\n")  # fmt: skip
    browser.get(base + "/dashboard/import")
    labelled(browser)
    by_id(browser, "file").send_keys(str(csv_file))
    by_id(browser, "upload").click()
    # The mapping page after the upload's round trip (read at once, it was sometimes the form).
    rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#mapping tr[data-column]"),
                    20, "the mapping page")  # fmt: skip
    mapped = {r.get_attribute("data-column"): r.find_element(By.TAG_NAME, "select") for r in rows}
    chosen = {c: s.get_attribute("value") for c, s in mapped.items()}
    assert chosen == {"Email Address": "email", "First Name": "first_name", "Groups": "lists",
                      "Company": "attributes.company"}  # fmt: skip
    rejected = browser.find_elements(By.CSS_SELECTOR, "#rejects tbody td")
    assert rejected[0].text == "3" and rejected[1].text.startswith("email is not valid")
    assert "company" in text(browser, "#preview tbody tr")
    labelled(browser)
    shot(browser, "import-mapping")
    from selenium.webdriver.support.ui import Select

    Select(mapped["Company"]).select_by_visible_text("not imported")
    before = by_id(browser, "preview")
    by_id(browser, "remap").click()
    # The form reloads the page: read the new preview, not the old one still on screen.
    wait_for(lambda: not_on_the_page(before), 20, "the preview with the new mapping")
    assert "company" not in text(browser, "#preview tbody tr")
    by_id(browser, "start-import").click()
    wait_for(lambda: text(browser, "#import-status") == "done", 60, "the import to finish")
    assert text(browser, "[data-count='created']") == "1"
    assert text(browser, "[data-count='rejected']") == "1"
    assert by_id(browser, "import-progress").get_attribute("value") == "2"
    imported = container.subscribers.get(container.subscribers.id_for("new1@example.com"))
    assert imported.lists == ["weekly"] and imported.attributes == {}
    shot(browser, "import")


def test_every_page_is_labelled_and_looked_at(browser, console) -> None:
    base, container = console
    sign_in_with_the_keyboard(browser, base, container.settings.admin_api_key)
    pages = (("templates", "/templates"), ("template", "/templates/newsletter"),
             ("suppressions", "/suppressions"), ("dead-letters", "/dead-letters"),
             ("subscribers", "/subscribers"), ("deliverability", "/deliverability"))  # fmt: skip
    for name, path in pages:
        browser.get(base + "/dashboard" + path)
        assert "Traceback" not in browser.page_source
        labelled(browser)
        shot(browser, name)
