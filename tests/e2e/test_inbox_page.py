"""The local inbox page (issue 15, item 11): counts said in proper English, a message frame that
fits a phone and shows the whole mail, and links in the mail that open outside the frame."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import chromium, page_width, screenshot
from support import REPO
from werkzeug.serving import make_server

from shared.runner.inbox import create_inbox_app
from shared.runner.smtp_sink import MaildirWriter
from shared.services.mime import build_message

pytestmark = pytest.mark.xdist_group("browser")
SCREENSHOTS = REPO / "var" / "screenshots"
PRODUCTS = "".join(
    f'<p style="margin:0 0 40px">Product {i}: <a href="https://shop.example.com/p/{i}">'
    f"see it</a></p>"
    for i in range(30)
)
HTML = (
    "<html><head><title>Summer</title></head><body>"
    f"<h1>Summer sale</h1>{PRODUCTS}<p>Bye</p></body></html>"
)


def deliver(maildir: Path, subject: str = "Summer sale") -> str:
    raw = build_message(sender="Shop <shop@example.com>", recipient="ann@example.com",
                        subject=subject, message_id=f"{subject.replace(' ', '')}@example.com",
                        html=HTML, text="Summer sale")  # fmt: skip
    return MaildirWriter(maildir).add(raw)


def test_the_count_is_singular_for_one_message(tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    client = create_inbox_app(maildir).test_client()
    assert "(0 messages)" in client.get("/").text
    deliver(maildir)
    assert "(1 message)" in client.get("/").text
    deliver(maildir, "Autumn news")
    assert "(2 messages)" in client.get("/").text


def test_the_message_frame_is_not_fixed_and_its_links_leave_it(tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    key = deliver(maildir)
    page = create_inbox_app(maildir).test_client().get(f"/{key}").text
    assert "height:600px" not in page and 'name="viewport"' in page
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in page
    assert "allow-scripts" not in page  # no script in a mail ever runs
    assert "&lt;head&gt;&lt;base target=&#34;_blank&#34;&gt;" in page


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[tuple[str, str]]:
    maildir = tmp_path / "mail"
    key = deliver(maildir)
    server = make_server("127.0.0.1", 0, create_inbox_app(maildir), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", key
    server.shutdown()


@pytest.mark.slow
def test_a_message_in_a_phone_wide_browser(inbox: tuple[str, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    base, key = inbox
    with chromium(tmp_path / "profile") as driver:
        driver.get(f"{base}/{key}")
        assert page_width(driver, 390) <= 390, "the message page overflows a phone's width"
        screenshot(driver, SCREENSHOTS / "inbox-message-390.png", 390)
        frame = driver.find_element(By.CSS_SELECTOR, "iframe.mail")
        mail_height = driver.execute_script(
            "return arguments[0].contentDocument.documentElement.scrollHeight", frame
        )
        assert mail_height > 900 and frame.size["height"] >= mail_height  # the whole mail shows
        screenshot(driver, SCREENSHOTS / "inbox-message-1280.png", 1280)
        driver.switch_to.frame(frame)
        driver.find_element(By.LINK_TEXT, "see it").click()
        driver.switch_to.default_content()
        assert len(driver.window_handles) == 2, "the link opened inside the frame"
        assert driver.current_url == f"{base}/{key}"
        driver.switch_to.window(driver.window_handles[0])
        driver.get(f"{base}/")
        assert page_width(driver, 390) <= 390, "the inbox list overflows a phone's width"
        screenshot(driver, SCREENSHOTS / "inbox-390.png", 390)
