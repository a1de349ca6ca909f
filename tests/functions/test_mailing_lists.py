"""Lists as a person meets them: the signup form joins the configured default lists, and the
preference center shows each list by its display name, for the subscriber's address, with a
way back from the "Saved" page. The catalogue comes from settings (shared/domain/mailing_lists)."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urljoin, urlparse

import pytest

from shared.domain.errors import ConfigurationError
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.settings import load

FORM = "application/x-www-form-urlencoded"
HTML = {"Accept": "text/html"}


def signup(function_client, body: str):
    return function_client("signup").post("/", data=body, content_type=FORM, headers=HTML)


def lists_of(container, email: str) -> list[str]:
    return container.subscribers.get(container.subscribers.id_for(email)).lists


def test_a_form_signup_joins_the_default_list(function_client, container) -> None:
    form = function_client("signup").get("/", headers=HTML).get_data(as_text=True)
    assert '<p id="joins">You will get: Weekly newsletter.</p>' in form
    assert signup(function_client, "email=ann%40example.com").status_code == 202
    assert lists_of(container, "ann@example.com") == ["newsletter"]
    assert signup(function_client, "email=bo%40example.com&lists=offers").status_code == 202
    assert lists_of(container, "bo@example.com") == ["offers"]  # a chosen list, no default


def test_the_default_lists_are_a_setting(function_client, make_container) -> None:
    container = make_container(signup_default_lists=("offers", "newsletter"))
    signup(function_client, "email=cy%40example.com")
    assert lists_of(container, "cy@example.com") == ["newsletter", "offers"]


def test_the_catalogue_is_read_from_the_environment_and_checked() -> None:
    settings = load({"MAILPIPE_LISTS": "weekly=The Weekly, deals=Deals of the day",
                     "MAILPIPE_SIGNUP_DEFAULT_LISTS": "weekly"})  # fmt: skip
    catalog = settings.list_catalog
    assert catalog.names == ("weekly", "deals")
    assert catalog.display_name("deals") == "Deals of the day"
    assert catalog.display_name("gone") == "gone"  # a list removed since a subscriber joined
    with pytest.raises(ConfigurationError, match="MAILPIPE_SIGNUP_DEFAULT_LISTS names newsletter"):
        load({"MAILPIPE_LISTS": "weekly=The Weekly"})


@pytest.fixture
def preferences(function_client, container):
    email = "dee@example.com"
    subscriber_id = container.subscribers.id_for(email)
    container.subscribers.create(
        Subscriber(id=subscriber_id, email=email, status=CONFIRMED, lists=["offers"])
    )
    url = container.links.preferences(subscriber_id)
    token = parse_qs(urlparse(url).query)["token"][0]
    return function_client("preferences"), token


def test_the_preference_center_shows_display_names_and_the_address(preferences) -> None:
    client, token = preferences
    page = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert "dee@example.com" in page
    labels = re.findall(r'name="lists" value="([^"]+)"[^>]*>\s*([^<]+?)\s*</label>', page)
    assert labels == [("newsletter", "Weekly newsletter"), ("product-updates", "Product updates"),
                      ("offers", "Offers and discounts")]  # fmt: skip
    assert 'value="offers" checked' in page


def test_the_saved_page_leads_back_to_the_preferences(preferences, container) -> None:
    client, token = preferences
    saved = client.post(f"/?token={token}", data={"lists": ["newsletter"], "frequency": "weekly"},
                        headers=HTML).get_data(as_text=True)  # fmt: skip
    assert "Your preferences are saved." in saved
    back = re.search(r'<a href="([^"]+)">Back to your preferences</a>', saved)
    assert back, saved
    again = client.get(urljoin(f"/?token={token}", html.unescape(back.group(1))), headers=HTML)
    assert again.status_code == 200 and 'value="newsletter" checked' in again.get_data(as_text=True)
    assert lists_of(container, "dee@example.com") == ["newsletter"]
