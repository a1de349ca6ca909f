"""GET /t/o/<token> and /t/c/<token> through the real tracking function: a 1x1 GIF and an open;
a 302 only to the signed link and a click; forged or altered links 404 (no open redirect);
human/machine classification; tracking off per campaign and per subscriber."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from compliance_flow import drain

from shared.bootstrap import Container
from shared.domain import tokens
from shared.domain.links import Links
from shared.domain.messages import MARKETING, Recipient, RenderRequest, SendBatch
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.services.mime import html_and_text

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
TARGET = "https://example.com/spring-sale?utm=mail&x=1"
GIF_1X1 = b"GIF89a\x01\x00\x01\x00"


@pytest.fixture
def tracking(function_client: Callable[[str], Any]) -> Any:
    return function_client("tracking")


def path(url: str) -> str:
    """The path under the tracking function's root (/t locally)."""
    return urlsplit(url).path.removeprefix("/t")


def rows(c: Container, deliver: Any, event_type: str) -> list[dict]:
    drain(c, deliver, ["warehouse-on-analytics-events"])
    return c.warehouse.query(
        "SELECT * FROM events WHERE event_type = $t ORDER BY occurred_at", {"t": event_type}
    )


def test_the_open_pixel_is_a_1x1_gif_and_records_an_open(
    container: Container, tracking: Any, deliver: Any
) -> None:
    pixel = container.links.open_pixel("m1@mailpipe.test", "s1", "c1", time.time() - 3600)
    response = tracking.get(path(pixel), headers={"User-Agent": IPHONE})
    assert response.status_code == 200
    assert response.mimetype == "image/gif"
    assert response.data.startswith(GIF_1X1)
    assert "no-store" in response.headers["Cache-Control"]
    (row,) = rows(container, deliver, "open")
    assert (row["subscriber_id"], row["campaign_id"], row["message_id"]) == (
        "s1", "c1", "m1@mailpipe.test")  # fmt: skip
    assert row["is_machine"] is False


def test_an_apple_privacy_proxy_open_is_a_machine_open(
    container: Container, tracking: Any, deliver: Any
) -> None:
    pixel = container.links.open_pixel("m1@mailpipe.test", "s1", "c1", time.time() - 3600)
    tracking.get(path(pixel), headers={"User-Agent": "Mozilla/5.0"})
    (row,) = rows(container, deliver, "open")
    assert row["is_machine"] is True
    assert '"apple_mpp"' in str(row["properties"])


def test_a_click_redirects_to_the_signed_link_and_records_it(
    container: Container, tracking: Any, deliver: Any
) -> None:
    link = container.links.click_tracker("m1@mailpipe.test", "s1", "c1", time.time() - 3600)
    response = tracking.get(path(link(TARGET)), headers={"User-Agent": IPHONE})
    assert response.status_code == 302
    assert response.headers["Location"] == TARGET
    (row,) = rows(container, deliver, "click")
    assert (row["link_url"], row["is_machine"]) == (TARGET, False)


def test_a_click_seconds_after_the_send_is_a_scanner(
    container: Container, tracking: Any, deliver: Any
) -> None:
    link = container.links.click_tracker("m1@mailpipe.test", "s1", "c1", time.time())
    assert tracking.get(path(link(TARGET)), headers={"User-Agent": IPHONE}).status_code == 302
    (row,) = rows(container, deliver, "click")
    assert row["is_machine"] is True
    assert '"fast_click"' in str(row["properties"])


def altered(token: str) -> str:
    body, mac = token.split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    changed = payload.replace(b"example.com", b"evil.example")
    assert changed != payload
    return f"{base64.urlsafe_b64encode(changed).rstrip(b'=').decode()}.{mac}"


def test_a_whole_token_click_link_still_redirects(
    container: Container, tracking: Any, deliver: Any
) -> None:
    """Links signed whole (one MAC over message and URL), as earlier mail carried them."""
    link = container.links.click("m1@mailpipe.test", "s1", "c1", TARGET)
    response = tracking.get(path(link), headers={"User-Agent": IPHONE})
    assert (response.status_code, response.headers["Location"]) == (302, TARGET)
    assert [r["link_url"] for r in rows(container, deliver, "click")] == [TARGET]


def _url_swapped(genuine: str, other_key_links: Links) -> str:
    """The message's half with a URL half signed by another key."""
    body, macs = genuine.split(".")
    forged = path(other_key_links.click_tracker("m1", "s1", "c1", 0)(TARGET)).removeprefix("/c/")
    return f"{body}.{macs[:22]}{forged.split('.')[1][22:]}"


@pytest.mark.parametrize(
    "forge",
    ["altered", "other-key", "open-token", "garbage", "empty", "one-mac-dropped", "url-mac-forged"],
)
def test_forged_or_altered_click_links_are_404_without_a_redirect(
    container: Container, tracking: Any, deliver: Any, forge: str
) -> None:
    genuine = path(container.links.click_tracker("m1", "s1", "c1", 0)(TARGET)).removeprefix("/c/")
    other = Links("another-key", container.links.base_urls)
    token = {
        "one-mac-dropped": genuine[:-22],
        "url-mac-forged": _url_swapped(genuine, other),
        "altered": altered(genuine),
        "other-key": tokens.sign("another-key", "click", {"m": "m1", "u": "https://evil.example"}),
        "open-token": path(container.links.open_pixel("m1", "s1", "c1")).removeprefix("/o/"),
        "garbage": "not-a-token",
        "empty": "",
    }[forge]
    response = tracking.get(f"/c/{token}")
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert rows(container, deliver, "click") == []


# --- tracking off -----------------------------------------------------------------------------


def rendered_html(c: Container, deliver: Any, request: RenderRequest) -> str:
    assert deliver("render", _json(request)).status_code < 300
    (delivery,) = c.bus.pull("send-on-send-requests", 10)
    return html_and_text(SendBatch.decode(delivery.data).emails[0])[0]


def _json(request: RenderRequest) -> bytes:
    from dataclasses import asdict

    from shared.domain.messages import to_json

    return to_json(asdict(request))


def welcome(recipient: Recipient, **flags: bool) -> RenderRequest:
    return RenderRequest("b1", "welcome", MARKETING, time.time(), [recipient], campaign_id="c1",
                         **flags)  # fmt: skip


def test_tracking_is_on_by_default(container: Container, deliver: Any) -> None:
    html = rendered_html(container, deliver, welcome(Recipient("s1", "ann@example.com")))
    assert "/t/c/" in html and "/t/o/" in html


def test_tracking_can_be_off_per_campaign(container: Container, deliver: Any) -> None:
    request = welcome(Recipient("s1", "ann@example.com"), track_opens=False, track_clicks=False)
    html = rendered_html(container, deliver, request)
    assert "/t/" not in html
    assert "https://example.com/getting-started" in html


def test_tracking_off_in_the_preference_center_reaches_the_rendered_mail(
    container: Container, deliver: Any, function_client: Callable[[str], Any]
) -> None:
    subscriber = Subscriber(container.subscribers.id_for("ann@example.com"), "ann@example.com",
                            status=CONFIRMED, lists=["newsletter"])  # fmt: skip
    container.subscribers.save(subscriber)
    token = urlsplit(container.links.preferences(subscriber.id)).query.removeprefix("token=")
    form = {"lists": "newsletter", "frequency": "weekly"}  # the tracking box left unticked
    response = function_client("preferences").post(f"/?token={token}", data=form)
    assert response.status_code == 200
    stored = container.subscribers.get(subscriber.id)
    assert stored.tracking is False
    recipient = Recipient(stored.id, stored.email, tracking=stored.tracking)
    html = rendered_html(container, deliver, welcome(recipient))
    assert "/t/" not in html
