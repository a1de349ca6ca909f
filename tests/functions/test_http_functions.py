"""The HTTP functions through functions-framework's own app, on real local adapters."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest

from shared import topology
from shared.domain import messages as msg
from shared.domain.subscriber import CONFIRMED, PENDING, UNSUBSCRIBED, Subscriber
from shared.topology import REPO_ROOT as REPO

JSON = "application/json"


def published(container, topic: str) -> list[dict]:
    """Messages waiting on the topic's (first) subscription, decoded."""
    sub = topology.subscriptions_of(topic)[0].name
    return [json.loads(d.data) for d in container.bus.pull(sub, 100, lease_s=0.001)]


@pytest.fixture
def signup(function_client, container):
    client = function_client("signup")

    def post(body, content_type=JSON, **kwargs):
        data = (
            json.dumps(body) if content_type == JSON and not isinstance(body, str | bytes) else body
        )
        return client.post("/", data=data, content_type=content_type, **kwargs)

    return post


def test_signup_accepts_json_and_records_a_pending_subscriber(signup, container):
    response = signup({"email": "Ann@Example.COM", "first_name": "Ann"})
    assert response.status_code == 202
    assert response.json["status"] == "accepted"
    subscriber = container.subscribers.get(container.subscribers.id_for("Ann@example.com"))
    assert subscriber.status == PENDING
    assert subscriber.email == "Ann@example.com"
    assert subscriber.consent[0]["action"] == "signup"
    [event] = published(container, topology.SUBSCRIBER_EVENTS)
    assert event["kind"] == msg.SIGNED_UP and event["subscriber_id"] == subscriber.id


def test_signup_accepts_the_html_form(signup, container):
    response = signup(
        "email=bob%40example.com&first_name=Bob",
        content_type="application/x-www-form-urlencoded",
        headers={"Accept": "text/html"},
    )
    assert response.status_code == 202
    assert b"Check your inbox" in response.data
    assert container.subscribers.find(container.subscribers.id_for("bob@example.com"))


def test_signup_page_has_a_form(function_client, container):
    response = function_client("signup").get("/", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert b'<form method="post"' in response.data and b'name="email"' in response.data


@pytest.mark.parametrize(
    ("body", "content_type", "status", "needle"),
    [
        ({"email": "not-an-address"}, JSON, 400, "email is not valid"),
        ({"first_name": "Ann"}, JSON, 400, "email is required"),
        ({"email": "a@example.com", "first_name": 7}, JSON, 400, "first_name must be text"),
        ('{"email": "a@example.com"', JSON, 400, "not valid JSON"),
        ("[1, 2]", JSON, 400, "JSON object"),
        ("email=a@example.com", "text/plain", 415, "application/json"),
        ({"email": "a@example.com\r\nBcc: x@evil.example"}, JSON, 400, "email"),
        ({"email": "a@example.com", "first_name": "<script>"}, JSON, 400, "first_name"),
    ],
)
def test_bad_signups_get_a_clear_4xx_and_store_nothing(
    signup, container, body, content_type, status, needle
):
    response = signup(body, content_type=content_type)
    assert response.status_code == status
    assert needle in response.json["error"]
    assert b"Traceback" not in response.data
    assert container.documents.query("subscribers") == []
    assert published(container, topology.SUBSCRIBER_EVENTS) == []


def test_a_2mb_body_is_refused(signup, container):
    response = signup({"email": "a@example.com", "first_name": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413
    assert "larger than" in response.json["error"]
    assert container.documents.query("subscribers") == []


def test_signing_up_twice_creates_one_subscriber_and_reveals_nothing(signup, container):
    first = signup({"email": "carol@example.com"})
    subscriber_id = container.subscribers.id_for("carol@example.com")
    container.subscribers.change(subscriber_id, lambda s: setattr(s, "status", CONFIRMED) or True)
    second = signup({"email": "carol@example.com"})
    fresh = signup({"email": "dave@example.com"})
    assert first.status_code == second.status_code == fresh.status_code == 202
    assert first.data == second.data == fresh.data
    assert len(container.documents.query("subscribers")) == 2
    assert container.subscribers.get(subscriber_id).status == CONFIRMED


def test_wrong_method_is_405(function_client, container):
    response = function_client("signup").put("/", data="{}", content_type=JSON)
    assert response.status_code == 405


def test_unknown_confirmation_token_is_404(function_client, container):
    response = function_client("confirm").get("/?token=nope", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert b"This link does not work" in response.data


def test_confirmation_link_confirms_once(function_client, container, deliver):
    signup_client = function_client("signup")
    signup_client.post("/", json={"email": "erin@example.com"})
    [event] = [d for d in container.bus.pull("preference-sync-on-subscriber-events", 10)]
    assert deliver("preference-sync", event.data).status_code == 200
    [render] = published(container, topology.RENDER_REQUESTS)
    link = render["recipients"][0]["variables"]["confirm_url"]
    token = parse_qs(urlparse(link).query)["token"][0]
    confirm = function_client("confirm")
    assert confirm.get(f"/?token={token}").json == {"status": "confirmed"}
    subscriber = container.subscribers.get(container.subscribers.id_for("erin@example.com"))
    assert subscriber.status == CONFIRMED
    again = confirm.get(f"/?token={token}")
    assert again.status_code == 404 and "already used" in again.json["error"]


def _unsubscribe_token(container, email: str) -> str:
    subscriber_id = container.subscribers.id_for(email)
    container.subscribers.create(Subscriber(id=subscriber_id, email=email, status=CONFIRMED))
    return container.links.unsubscribe_token(container.subscribers.id_for(email), "c1")


def test_unsubscribe_get_shows_a_button_and_changes_nothing(function_client, container):
    token = _unsubscribe_token(container, "fay@example.com")
    response = function_client("unsubscribe").get(f"/?token={token}")
    assert response.status_code == 200 and b"<button" in response.data
    assert container.subscribers.get(container.subscribers.id_for("fay@example.com")).status == (
        CONFIRMED
    )


def test_one_click_unsubscribe_post_takes_effect_at_once(function_client, container):
    token = _unsubscribe_token(container, "gus@example.com")
    response = function_client("unsubscribe").post(
        f"/?token={token}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    subscriber = container.subscribers.get(container.subscribers.id_for("gus@example.com"))
    assert subscriber.status == UNSUBSCRIBED
    assert container.suppressions.reason("gus@example.com") == "unsubscribed"
    assert subscriber.consent[-1]["source"] == "one-click"


def test_a_forged_unsubscribe_token_is_404(function_client, container):
    token = _unsubscribe_token(container, "hal@example.com")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = function_client("unsubscribe").post(f"/?token={forged}")
    assert response.status_code == 404


def test_open_pixel_is_a_gif_even_for_a_bad_token(function_client, container):
    response = function_client("tracking").get("/o/garbage")
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert published(container, topology.ANALYTICS_EVENTS) == []


def test_click_redirects_only_to_the_signed_url(function_client, container):
    link = container.links.click("m1@x", "s1", "c1", "https://example.com/a?b=1")
    path = urlparse(link).path.removeprefix("/t")
    response = function_client("tracking").get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == "https://example.com/a?b=1"
    [[event]] = published(container, topology.ANALYTICS_EVENTS)
    assert event["event_type"] == "click" and event["link_url"] == "https://example.com/a?b=1"
    assert function_client("tracking").get(path[:-3] + "abc").status_code == 404


def test_webhook_for_an_unknown_provider_is_404(function_client, container):
    response = function_client("webhooks").post("/nope", data=b"[]", content_type=JSON)
    assert response.status_code == 404


def test_unsigned_webhook_is_401_and_records_nothing(function_client, container):
    response = function_client("webhooks").post("/local", data=b"[]", content_type=JSON)
    assert response.status_code == 401
    assert published(container, topology.ESP_FEEDBACK) == []


def test_an_error_page_without_templates_still_answers_in_json(function_client, make_container):
    make_container(template_root=REPO / "no-such-templates")
    response = function_client("tracking").get("/c/forged.token", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.json["error"] == "this link is not valid"


@pytest.mark.parametrize("lists", [5, [{"x": 1}], ["no-such-list"]])
def test_bad_lists_are_a_clear_400_and_store_nothing(signup, container, lists):
    response = signup({"email": "ivy@example.com", "lists": lists})
    assert response.status_code == 400 and "lists" in response.json["error"]
    assert container.documents.query("subscribers") == []


def test_a_chunked_body_is_capped_while_reading(function_client, container):
    import io

    body = io.BytesIO(b"x" * (3 * 1024 * 1024))
    response = function_client("signup").post(
        "/",
        input_stream=body,
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert body.tell() < 1024 * 1024  # stopped near the limit, not read whole


def test_the_client_ip_is_the_hop_googles_front_end_appended(function_client, container):
    for n in range(25):  # a forged first hop per request must not dodge the per-IP limit
        function_client("signup").post(
            "/",
            json={"email": f"p{n}@example.com"},
            headers={"X-Forwarded-For": f"10.0.0.{n}, 203.0.113.7"},
        )
    response = function_client("signup").post(
        "/", json={"email": "last@example.com"}, headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.7"}
    )
    assert response.status_code == 429


def test_an_unused_confirmation_link_cannot_undo_an_unsubscribe(
    function_client, container, deliver
):
    function_client("signup").post("/", json={"email": "joy@example.com"})
    [event] = container.bus.pull("preference-sync-on-subscriber-events", 10)
    deliver("preference-sync", event.data)
    [render] = published(container, topology.RENDER_REQUESTS)
    link = render["recipients"][0]["variables"]["confirm_url"]
    token = parse_qs(urlparse(link).query)["token"][0]
    subscriber_id = container.subscribers.id_for("joy@example.com")
    container.unsubscribe.unsubscribe_subscriber(subscriber_id, "test")
    response = function_client("confirm").get(f"/?token={token}")
    assert response.status_code == 404 and "sign up again" in response.json["error"]
    assert container.subscribers.get(subscriber_id).status == UNSUBSCRIBED
