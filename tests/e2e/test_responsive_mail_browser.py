"""A responsive newsletter (two-column product grid, `@media` rules) rendered by Mailpipe's
render path, then laid out by Debian's chromium at a phone's width: nothing may stick out.

The inliner used to drop every `<style>` block, media queries included, so the grid kept its
inline 600 px and overflowed a 390 px screen. Chromium is installed with apt when missing
(tests/system_packages.py); the test fails, never skips, when it cannot run.
"""

from __future__ import annotations

import email
import shutil
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from browser_support import chromium, viewport
from support import REPO

from shared.adapters.local.filesystem_blobs import FilesystemBlobs
from shared.domain.links import Links, local_base_urls
from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.services.rendering import Renderer
from shared.services.templating import TemplateCatalog

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]
FIXTURES = REPO / "tests" / "data" / "templates"
PHONE_WIDTH = 390
PRODUCTS = [
    {"name": f"Product {n}", "price": f"€{n * 7}.00", "url": f"https://shop.example.com/p/{n}",
     "image": f"https://shop.example.com/img/{n}.png"}
    for n in range(1, 7)
]  # fmt: skip


@pytest.fixture(scope="module")
def phone_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    profile = tmp_path_factory.mktemp("chromium-phone")
    # The grid's product images are remote: off, so nothing waits on the network.
    with chromium(profile, extra_flags=("--blink-settings=imagesEnabled=false",)) as driver:
        viewport(driver, PHONE_WIDTH, 844)
        yield driver


def rendered_html(tmp_path: Path) -> str:
    """The HTML part of the MIME message Mailpipe's renderer builds, as a mail client reads it."""
    shutil.copytree(FIXTURES, tmp_path / "templates")
    catalog = TemplateCatalog(FilesystemBlobs(tmp_path / "templates"))
    links = Links("test-signing-key", local_base_urls("https://mail.example.com"))
    renderer = Renderer(links, "Shop <news@shop.example.com>", "shop.example.com")
    request = RenderRequest(
        batch_id="responsive", template="product_grid", kind=MARKETING, audience_at=0.0,
        recipients=[], campaign_id="spring", subject="New this week, {{ first_name }}",
        context={"shop_name": "Example Shop", "items": PRODUCTS},
    )  # fmt: skip
    person = Recipient("s1", "ann@example.com", "Ann", {"attributes": {"city": "Zürich"}})
    message = renderer.render(catalog.email("product_grid"), request, person)
    part = next(p for p in email.message_from_bytes(message.raw).walk() if _is_html(p))
    return str(part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8"))


def _is_html(part: Message) -> bool:
    return part.get_content_type() == "text/html"


def test_the_product_grid_fits_a_phone_screen(phone_browser, tmp_path: Path) -> None:
    html = rendered_html(tmp_path)
    assert "@media" in html, "the media queries must survive inlining"
    page = tmp_path / "mail.html"
    page.write_text(html, encoding="utf-8")
    phone_browser.get(page.as_uri())
    width = phone_browser.execute_script("return window.innerWidth")
    scroll = phone_browser.execute_script("return document.documentElement.scrollWidth")
    assert width == PHONE_WIDTH
    assert scroll <= width, f"the mail is {scroll} px wide on a {width} px screen"
    columns = phone_browser.execute_script(
        "return [...document.querySelectorAll('td.column')].map(td => td.getBoundingClientRect())"
        ".map(r => [Math.round(r.left), Math.round(r.right)])"
    )
    assert len(columns) == len(PRODUCTS)
    assert all(right <= width for _, right in columns), columns  # the cards stack, none cut off
    unsubscribe = phone_browser.execute_script(
        "const a = [...document.links].find(l => l.textContent === 'Unsubscribe');"
        "return a.getBoundingClientRect().right"
    )
    assert unsubscribe <= width
