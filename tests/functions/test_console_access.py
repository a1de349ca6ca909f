"""Who may use the console: no action without sign-in, every form needs the session's CSRF
token, a viewer only reads the dashboards, and sessions live in signed, HttpOnly, SameSite
cookies. Driven through the real console app (Flask test client) on a local container."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from shared.console import auth
from shared.console.access import ADMIN, VIEWER, ConsoleAccess
from shared.console.app import create_console_app
from shared.console.campaign_views import ACTIONS

ADMIN_KEY, VIEWER_KEY = "test-admin-key", "test-viewer-key"
SAMPLE_ARGS = {"campaign_id": "c1", "action": "send", "subscriber_id": "s1", "name": "newsletter",
               "subscription": "send-on-send-requests", "message_id": "m1", "key": "k",
               "import_id": "i1"}  # fmt: skip


@pytest.fixture
def console(make_container):
    container = make_container(console_viewer_key=VIEWER_KEY)
    app = create_console_app(lambda: container, ConsoleAccess.from_settings(container.settings))
    app.config["TESTING"] = True
    return app


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client, key: str = ADMIN_KEY):
    token = csrf_of(client.get("/sign-in").get_data(as_text=True))
    return client.post("/sign-in", data={"csrf_token": token, "key": key, "next": "/campaigns"})


def post_routes(app) -> list[str]:
    """Every POST route of the console, with sample values for its parts."""
    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "POST" not in (rule.methods or ()) or rule.endpoint == "console.sign_in":
                continue
            actions = ACTIONS if "action" in rule.arguments else ["send"]
            for action in actions:  # each campaign action, too
                values = {k: SAMPLE_ARGS[k] for k in rule.arguments} | {"action": action}
                urls.append(rule.build({k: values[k] for k in rule.arguments})[1])
    return urls


def test_every_post_route_refuses_without_a_session_and_without_the_csrf_token(console) -> None:
    urls = post_routes(console)
    assert len(urls) >= 20 and "/campaigns/new" in urls and "/campaigns/c1/delete" in urls
    assert "/campaigns/new" in urls and "/subscribers/s1/erase" in urls
    client = console.test_client()
    for url in urls:  # no session: refused before any view runs
        assert client.post(url, data={"to": "x@example.com"}).status_code == 403, url
    sign_in(client)
    for url in urls:  # signed in, but no token, or a wrong one
        assert client.post(url, data={}).status_code == 403, url
        assert client.post(url, data={"csrf_token": "forged"}).status_code == 403, url
    assert "form expired" in client.post("/campaigns/new", data={}).get_data(as_text=True).lower()


def test_a_post_with_a_token_but_no_session_is_refused_as_not_signed_in(console) -> None:
    client = console.test_client()
    token = csrf_of(client.get("/sign-in").get_data(as_text=True))  # a session with a token only
    answer = client.post("/campaigns/new", data={"csrf_token": token, "name": "x"})
    assert answer.status_code == 401
    assert "Sign in" in answer.get_data(as_text=True)


def test_pages_redirect_to_sign_in_and_back(console) -> None:
    client = console.test_client()
    for path in ("/", "/campaigns", "/subscribers?q=a", "/dead-letters", "/templates"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/sign-in?next=" in answer.location, path
    answer = sign_in(client)
    assert answer.status_code == 303 and answer.location.endswith("/campaigns")
    assert client.get("/campaigns").status_code == 200


def test_a_wrong_key_is_refused_and_starts_no_session(console) -> None:
    client = console.test_client()
    answer = sign_in(client, "not-the-key")
    assert answer.status_code == 401 and "That key is not right." in answer.get_data(as_text=True)
    assert client.get("/campaigns").status_code == 302


def test_the_session_cookie_is_signed_httponly_and_samesite(console) -> None:
    client = console.test_client()
    answer = sign_in(client)
    cookie = [h for h in answer.headers.getlist("Set-Cookie") if "mailpipe_console=" in h][-1]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split("mailpipe_console=", 1)[1].split(";", 1)[0]
    other = console.test_client()
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    other.set_cookie("mailpipe_console", tampered)
    assert other.get("/campaigns").status_code == 302  # a tampered cookie is no session


def test_a_viewer_reads_the_dashboards_and_nothing_else(console) -> None:
    client = console.test_client()
    assert sign_in(client, VIEWER_KEY).status_code == 303
    assert client.get("/deliverability").status_code == 200
    for path in ("/campaigns", "/campaigns/new", "/subscribers", "/dead-letters", "/templates"):
        assert client.get(path).status_code == 403, path
    page = client.get("/growth").get_data(as_text=True)
    token = csrf_of(page)  # the sign-out form
    answer = client.post("/campaigns/new", data={"csrf_token": token, "name": "x"})
    assert answer.status_code == 403 and "Read-only" in answer.get_data(as_text=True)
    assert "Manage campaigns" not in page and "Sign out (viewer)" in page


def test_a_changed_admin_key_ends_the_sessions_signed_in_with_the_old_one(make_container) -> None:
    container = make_container()
    old = ConsoleAccess.from_settings(container.settings)
    app = create_console_app(lambda: container, old)
    client = app.test_client()
    sign_in(client)
    assert client.get("/campaigns").status_code == 200
    cookie = client.get_cookie("mailpipe_console")
    assert cookie is not None
    changed = create_console_app(lambda: container, replace(old, admin_key="a-new-key"))
    other = changed.test_client()
    other.set_cookie("mailpipe_console", cookie.value)
    assert other.get("/campaigns").status_code == 302


def test_sign_out_ends_the_session(console) -> None:
    client = console.test_client()
    sign_in(client)
    token = csrf_of(client.get("/campaigns").get_data(as_text=True))
    assert client.post("/sign-out", data={"csrf_token": token}).status_code == 303
    assert client.get("/campaigns").status_code == 302


def test_a_generated_key_when_none_is_set(make_container) -> None:
    container = make_container(admin_api_key="")
    access = ConsoleAccess.from_settings(container.settings, generate=True)
    assert access.generated and len(access.admin_key) >= 20
    assert access.role_for_key(access.admin_key) == ADMIN
    assert not ConsoleAccess.from_settings(container.settings).enabled
    app = create_console_app(lambda: container, ConsoleAccess.from_settings(container.settings))
    assert app.test_client().get("/sign-in").status_code == 503


def test_roles_and_redirect_targets() -> None:
    access = ConsoleAccess(ADMIN_KEY, VIEWER_KEY, admins=("boss@example.com",))
    assert access.role_for_key(f" {VIEWER_KEY} ") == VIEWER
    assert access.role_for_key("") is None and access.role_for_key("x") is None
    assert access.role_for_identity("Boss@Example.com") == ADMIN
    assert access.role_for_identity("reader@example.com") == VIEWER
    assert auth.safe_next("//evil.example/x", "/d") == "/d"
    assert auth.safe_next("https://evil.example/", "/d") == "/d"
    assert auth.safe_next("/dashboard/campaigns?q=a", "/d") == "/dashboard/campaigns?q=a"


def test_the_admin_function_serves_the_console_in_gcp_style(make_container, function_client):
    """In GCP the admin function answers /dashboard with the console (its own sign-in) and
    everything else with the admin API (Bearer key)."""
    make_container()
    client = function_client("admin")
    answer = client.get("/dashboard/campaigns")
    assert answer.status_code == 302 and "/dashboard/sign-in" in answer.location
    token = csrf_of(client.get("/dashboard/sign-in").get_data(as_text=True))
    answer = client.post("/dashboard/sign-in", data={"csrf_token": token, "key": ADMIN_KEY,
                                                     "next": "/dashboard/campaigns"})  # fmt: skip
    assert answer.status_code == 303 and answer.location.endswith("/dashboard/campaigns")
    page = client.get("/dashboard/campaigns").get_data(as_text=True)
    assert "Manage campaigns" in page and "/dashboard/console/static/console.css" in page
    assert client.get("/dashboard/console/static/console.js").status_code == 200
    assert client.get("/campaigns").status_code == 401  # the API still wants its Bearer key


def test_the_admin_functions_zip_carries_the_console_templates() -> None:
    from shared import topology
    from shared.packaging import zip_entries

    names = {info.filename for info, _ in zip_entries(topology.function("admin"), "")}
    assert {"templates/console/campaign_new.html", "templates/dashboard/base.html",
            "shared/console/static/console.js"} <= names  # fmt: skip
    assert any(n.startswith("sql/dashboards/") for n in names)
    others = {info.filename for info, _ in zip_entries(topology.function("send"), "")}
    assert not any(n.startswith("templates/") for n in others)


def test_sign_in_attempts_are_limited_per_address_right_key_or_not(console) -> None:
    """Guessing the key is slow: after SIGN_IN_ATTEMPTS tries from one address, even the right
    key is refused (429, a page that says why) until the window ends; another address is not."""
    from shared.console.app import SIGN_IN_ATTEMPTS

    guesser = console.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    for _ in range(SIGN_IN_ATTEMPTS):
        assert sign_in(guesser, "wrong-key").status_code == 401
    refused = sign_in(guesser)
    assert refused.status_code == 429
    assert "too many sign-in attempts" in refused.get_data(as_text=True)
    assert guesser.get("/campaigns").status_code in (302, 303)  # no session came of it
    colleague = console.test_client()
    colleague.environ_base["REMOTE_ADDR"] = "198.51.100.8"
    assert sign_in(colleague).status_code == 303
