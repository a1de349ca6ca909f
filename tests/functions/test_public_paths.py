"""Every public function answers the same whether or not its route prefix was stripped, and
takes the client's address from X-Forwarded-For by the number of trusted proxy hops.

The functions-framework test client hands the path over as it is, which is what each layout on
GCP does: the function's own URL (cloudfunctions.net / run.app) reaches it with no prefix
("/o/<token>"), and the HTTPS load balancer of terraform/lb.tf passes the full path
("/t/o/<token>"): its URL map routes by prefix and rewrites nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from trigger_support import event

from shared import topology
from shared.bootstrap import Container
from shared.domain.subscriber import CONFIRMED, Subscriber

PUBLIC = sorted(f.name for f in topology.FUNCTIONS if f.public)
EVENTS_KEY = "events-test-key"
ANN = "ann@example.com"


def test_the_public_functions_are_the_ones_checked_here() -> None:
    assert sorted(REQUESTS) == PUBLIC, "add the new public function to REQUESTS"


def _ann(c: Container) -> Subscriber:
    ann = Subscriber(c.subscribers.id_for(ANN), ANN, status=CONFIRMED)
    c.subscribers.save(ann)
    return ann


def _below(url: str) -> str:
    """A link's path and query below its route (what the function's own URL receives)."""
    parts = urlsplit(url)
    route = next(f.route for f in topology.FUNCTIONS if f.route and parts.path.startswith(f.route))
    rest = parts.path.removeprefix(route) or "/"
    return f"{rest}?{parts.query}" if parts.query else rest


def _click(c: Container) -> str:
    return c.links.click("m1", _ann(c).id, "c1", "https://example.com/x")


def _event_request() -> dict[str, Any]:
    return {
        "data": json.dumps(event(ANN, "viewed", time.time() - 5, "k1")),
        "content_type": "application/json",
        "headers": {"Authorization": f"Bearer {EVENTS_KEY}"},
    }


# name -> (method, path below the route, request keywords) built from a container with Ann.
Request = tuple[str, str, dict[str, Any]]
REQUESTS: dict[str, Callable[[Container], Request]] = {
    "signup": lambda c: ("GET", "/", {"headers": {"Accept": "text/html"}}),
    "confirm": lambda c: ("GET", "/?token=not-a-token", {}),
    "preferences": lambda c: ("GET", _below(c.links.preferences(_ann(c).id)), {}),
    "unsubscribe": lambda c: ("GET", _below(c.links.unsubscribe(_ann(c).id)), {}),
    "tracking": lambda c: ("GET", _below(_click(c)), {}),
    "webhooks": lambda c: ("POST", "/mailgun", {"data": b"{}", "content_type": "application/json"}),
    "events": lambda c: ("POST", "/", _event_request()),
}


def _answer(response: Any) -> tuple[int, str | None, bytes]:
    return response.status_code, response.headers.get("Location"), response.data


@pytest.mark.parametrize("name", PUBLIC)
def test_a_public_function_answers_the_same_with_or_without_its_prefix(
    name: str, make_container: Callable[..., Container], function_client: Callable[[str], Any]
) -> None:
    c = make_container(events_api_key=EVENTS_KEY, mailgun_webhook_signing_key="mg-key")
    method, below, keywords = REQUESTS[name](c)
    route = topology.function(name).route
    assert route, name
    client = function_client(name)
    stripped = _answer(client.open(below, method=method, **keywords))
    full = _answer(client.open(route + below, method=method, **keywords))
    assert full == stripped, f"{name}: {route}{below} and {below} answer differently"
    assert stripped[0] < 500, stripped
    if name in ("tracking", "preferences", "unsubscribe", "signup", "events"):
        assert stripped[0] in (200, 202, 302), f"{name} should succeed: {stripped[:2]}"
    if name == "webhooks":  # the mailgun route was reached: an unsigned body is refused
        assert stripped[0] == 401


def test_a_prefix_is_taken_off_only_at_a_segment_boundary(function_client) -> None:
    """/tracker/... is not under /t: it stays as it is (and is no tracking link)."""
    response = function_client("tracking").get("/tx/o/abc")
    assert response.status_code == 404


# --- the client's address -----------------------------------------------------------------------

CLIENT, SPOOFED, BALANCER = "203.0.113.7", "6.6.6.6", "34.117.1.2"
LAYOUTS = {
    # Straight to the function's URL: Cloud Run's front end appends the address it saw.
    "direct": (1, f"{SPOOFED}, {CLIENT}"),
    # Behind the HTTPS load balancer: it appends "<client>,<its own IP>".
    "load-balancer": (2, f"{SPOOFED}, {CLIENT},{BALANCER}"),
}


def _signup(function_client: Callable[[str], Any], email: str, forwarded: str) -> Any:
    return function_client("signup").post(
        "/", json={"email": email}, headers={"X-Forwarded-For": forwarded}
    )


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_consent_records_the_clients_address_in_both_layouts(
    layout: str, make_container: Callable[..., Container], function_client: Callable[[str], Any]
) -> None:
    hops, forwarded = LAYOUTS[layout]
    c = make_container(trusted_proxy_hops=hops)
    assert _signup(function_client, ANN, forwarded).status_code == 202
    subscriber = c.subscribers.get(c.subscribers.id_for(ANN))
    assert subscriber.consent[0]["ip"] == CLIENT


def test_behind_the_balancer_each_client_has_its_own_signup_limit(
    make_container: Callable[..., Container], function_client: Callable[[str], Any]
) -> None:
    """With the balancer's own address taken for the client, every signup would share one
    rate limit: the second client here would get 429."""
    make_container(trusted_proxy_hops=2, signup_ip_limit_per_hour=1)
    first = _signup(function_client, "a@example.com", f"198.51.100.1,{BALANCER}")
    second = _signup(function_client, "b@example.com", f"198.51.100.2,{BALANCER}")
    again = _signup(function_client, "c@example.com", f"198.51.100.1,{BALANCER}")
    assert (first.status_code, second.status_code, again.status_code) == (202, 202, 429)


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (1, "", "127.0.0.1"),  # no header: the socket's peer (the local runner)
        (1, "9.9.9.9", "9.9.9.9"),
        (2, "9.9.9.9", "9.9.9.9"),  # fewer entries than hops: the leftmost
        (0, "9.9.9.9, 8.8.8.8", "127.0.0.1"),  # 0 trusts no proxy
        (3, "1.1.1.1, 2.2.2.2, 3.3.3.3, 4.4.4.4", "2.2.2.2"),
    ],
)
def test_client_ip_counts_trusted_hops_from_the_right(hops: int, forwarded: str, expected: str):
    import flask

    from shared.entrypoints.http import client_ip

    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with flask.Flask(__name__).test_request_context(
        "/", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    ):
        assert client_ip(flask.request, hops) == expected
