"""Unsubscribe (RFC 8058 one-click) and the preference center, through the real functions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from compliance_flow import drain
from support import RecordingMailer

from shared.bootstrap import Container
from shared.domain.messages import MARKETING, SendBatch
from shared.domain.subscriber import CONFIRMED, UNSUBSCRIBED, Subscriber
from shared.ports import OutgoingEmail
from shared.repositories import suppressions as reasons

EMAIL = "ann@example.com"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def c(make_container: Callable[..., Container], mailer: RecordingMailer) -> Container:
    container = make_container(overrides={"mailer": mailer})
    container.subscribers.save(Subscriber(container.subscribers.id_for(EMAIL), EMAIL,
                                          status=CONFIRMED, lists=["newsletter", "offers"],
                                          topics=["news"]))  # fmt: skip
    return container


def token_of(url: str) -> str:
    return urlsplit(url).query.removeprefix("token=")


def one_click_headers(c: Container) -> tuple[str, str]:
    """The List-Unsubscribe URL of a rendered campaign mail, as a mailbox provider sees it."""
    url = c.links.unsubscribe(c.subscribers.id_for(EMAIL), "c1")
    return urlsplit(url).path.removeprefix("/unsubscribe") or "/", token_of(url)


def send_batch(c: Container, audience_at: float) -> SendBatch:
    email = OutgoingEmail("m2@mailpipe.test", "hello@mailpipe.test", EMAIL, "News", "<p>x</p>",
                          "x", {}, b"x", c.subscribers.id_for(EMAIL))  # fmt: skip
    return SendBatch("b-c2", MARKETING, audience_at, [email], campaign_id="c2")


def test_one_click_post_unsubscribes_at_once_without_cookies(
    c: Container, function_client: Callable[[str], Any], deliver: Any, mailer: RecordingMailer
) -> None:
    audience_read_at = time.time() - 60  # a campaign whose audience was read before the click
    path, token = one_click_headers(c)
    client = function_client("unsubscribe")
    response = client.post(f"{path}?token={token}", data="List-Unsubscribe=One-Click",
                           content_type=FORM)  # fmt: skip
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    subscriber = c.subscribers.get(c.subscribers.id_for(EMAIL))
    assert subscriber.status == UNSUBSCRIBED
    assert subscriber.consent[-1]["source"] == "one-click"
    assert c.suppressions.reason(EMAIL) == reasons.UNSUBSCRIBED
    # The very next send-time check sees it.
    batch = send_batch(c, audience_read_at)
    assert deliver("send", batch.encode(), {"encoding": "zlib+json"}).status_code < 300
    assert mailer.sent == []
    assert c.ledger.get(batch.batch_id).outcomes == {subscriber.id: "suppressed"}


def test_one_click_twice_is_harmless(c: Container, function_client: Callable[[str], Any]) -> None:
    path, token = one_click_headers(c)
    client = function_client("unsubscribe")
    for _ in range(2):
        response = client.post(f"{path}?token={token}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
    assert len([r for r in c.subscribers.get(c.subscribers.id_for(EMAIL)).consent
                if r["action"] == "unsubscribe"]) == 1  # fmt: skip


def test_get_shows_a_button_and_unsubscribes_no_one(
    c: Container, function_client: Callable[[str], Any]
) -> None:
    path, token = one_click_headers(c)
    response = function_client("unsubscribe").get(f"{path}?token={token}",
                                                  headers={"Accept": "text/html"})  # fmt: skip
    assert response.status_code == 200
    assert b"<button" in response.data and b'method="post"' in response.data
    assert c.subscribers.get(c.subscribers.id_for(EMAIL)).status == CONFIRMED
    assert c.suppressions.reason(EMAIL) is None


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_forged_unsubscribe_link_is_404(
    c: Container, function_client: Callable[[str], Any], method: str
) -> None:
    _, token = one_click_headers(c)
    response = getattr(function_client("unsubscribe"), method)(f"/?token={token[:-2]}xx")
    assert response.status_code == 404
    assert c.subscribers.get(c.subscribers.id_for(EMAIL)).status == CONFIRMED


def test_one_click_for_an_erased_subscriber_still_answers_200(
    c: Container, function_client: Callable[[str], Any]
) -> None:
    path, token = one_click_headers(c)
    c.subscribers.delete(c.subscribers.id_for(EMAIL))
    response = function_client("unsubscribe").post(
        f"{path}?token={token}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200


# --- preference center -----------------------------------------------------------------------


@pytest.fixture
def prefs(c: Container, function_client: Callable[[str], Any]) -> tuple[Any, str]:
    return function_client("preferences"), token_of(
        c.links.preferences(c.subscribers.id_for(EMAIL))
    )


def test_the_preference_page_shows_the_current_choices(prefs: tuple[Any, str]) -> None:
    client, token = prefs
    page = client.get(f"/?token={token}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert 'value="newsletter" checked' in page and 'value="offers" checked' in page
    assert 'value="product-updates" >' in page
    assert "Leave all lists" in page


def test_changing_lists_topics_and_frequency(
    c: Container, prefs: tuple[Any, str], deliver: Any
) -> None:
    client, token = prefs
    form = {"lists": ["newsletter", "product-updates"], "topics": ["tips", "events"],
            "frequency": "monthly", "tracking": "on"}  # fmt: skip
    assert client.post(f"/?token={token}", data=form).status_code == 200
    s = c.subscribers.get(c.subscribers.id_for(EMAIL))
    assert (s.lists, s.topics, s.frequency, s.tracking) == (
        ["newsletter", "product-updates"], ["events", "tips"], "monthly", True)  # fmt: skip
    assert s.status == CONFIRMED
    drain(c, deliver)
    (row,) = c.warehouse.query("SELECT * FROM events WHERE event_type = 'preferences_changed'")
    assert row["subscriber_id"] == s.id


def test_json_clients_keep_tracking_unless_they_say_so(
    c: Container, prefs: tuple[Any, str]
) -> None:
    client, token = prefs
    body = {"lists": ["offers"], "topics": [], "frequency": "weekly"}
    assert client.post(f"/?token={token}", json=body).status_code == 200
    assert c.subscribers.get(c.subscribers.id_for(EMAIL)).tracking is True


@pytest.mark.parametrize(
    "form", [{"lists": "spam-list"}, {"topics": "gossip"}, {"frequency": "hourly"}]
)
def test_unknown_choices_are_400_and_change_nothing(
    c: Container, prefs: tuple[Any, str], form: dict
) -> None:
    client, token = prefs
    response = client.post(f"/?token={token}", data=form)
    assert response.status_code == 400
    assert c.subscribers.get(c.subscribers.id_for(EMAIL)).lists == ["newsletter", "offers"]


def test_leaving_all_unsubscribes_and_suppresses(c: Container, prefs: tuple[Any, str]) -> None:
    client, token = prefs
    assert client.post(f"/?token={token}", data={"action": "leave"}).status_code == 200
    assert c.subscribers.get(c.subscribers.id_for(EMAIL)).status == UNSUBSCRIBED
    assert c.suppressions.reason(EMAIL) == reasons.UNSUBSCRIBED


def test_a_forged_preference_link_is_404(prefs: tuple[Any, str]) -> None:
    client, token = prefs
    assert client.get(f"/?token={token[:-3]}abc").status_code == 404
