"""The fuzz suite (issue 16): docs/openapi.yaml describes exactly the routes the HTTP functions
serve, and schemathesis drives every operation in it, in process against the same WSGI app the
runner serves, with generated input that fits the description and input that breaks it. No
answer is a 5xx or holds a stack trace, and a refused request records nothing: no subscriber,
no bus message, no warehouse row.

Deterministic for CI: hypothesis derandomized, no example database, a bounded number of
examples per operation (FUZZ_EXAMPLES)."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from webhook_signing import TOPIC, FakeSnsHttp, SnsSigner

from shared import topology
from shared.adapters.esp.webhook_parsers import ENABLING_SETTINGS
from shared.runner.functions_host import FunctionsHost
from shared.runner.local_runner import root_app
from shared.services.admin_api import ACTIONS
from shared.topology import REPO_ROOT

SPEC = REPO_ROOT / "docs" / "openapi.yaml"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
KEYS = {"adminKey": "test-admin-key", "eventsKey": "events-key"}
TRACE = re.compile(rb"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")

schema = schemathesis.openapi.from_path(SPEC)


@pytest.fixture
def api(make_container) -> tuple[Any, Any]:
    container = make_container(
        overrides={"sns_http": FakeSnsHttp(SnsSigner(time.time()).pem)},
        events_api_key=KEYS["eventsKey"],
        sendgrid_webhook_public_key=_sendgrid_key(),
        mailgun_webhook_signing_key="mailgun-key",
        ses_topic_arns=(TOPIC,),
    )
    return container, FunctionsHost().wsgi(root_app(container))


def _sendgrid_key() -> str:
    from webhook_signing import SendGridSigner

    return SendGridSigner().public_key_base64


def recorded(container: Any) -> tuple[int, int, int]:
    """What a request can leave behind: subscribers, bus messages, warehouse rows."""
    subscribers = len(container.documents.query("subscribers", limit=100_000))
    messages = sum(
        d["ready"] + d["leased"] + d["backoff"] + d["dead_lettered"]
        for d in container.bus.depths().values()
    )
    rows = container.warehouse.query("SELECT count(*) AS n FROM events", {})[0]["n"]
    return subscribers, messages, rows


def keys_for(case: Any) -> dict[str, str]:
    """The right API key for a keyed operation, so the fuzz reaches past authentication."""
    security = case.operation.definition.raw.get("security") or []
    names = [name for requirement in security for name in requirement]
    return {"Authorization": f"Bearer {KEYS[names[0]]}"} if names else {}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_without_5xx_or_trace_and_a_refusal_records_nothing(
    case: Any, api: tuple[Any, Any]
) -> None:
    container, app = api
    before = recorded(container)
    response = case.call(app=app, headers=keys_for(case))
    shown = (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.content[:300]!r}"
    )
    assert response.status_code < 500, shown
    assert not TRACE.search(response.content), shown
    if response.status_code >= 400:
        assert recorded(container) == before, shown


HOSTILE_BODIES = {
    "json-1000-deep": (b"[" * 1000 + b"]" * 1000, "application/json"),
    "json-objects-deep": (b'{"a":' * 1000 + b"1" + b"}" * 1000, "application/json"),
    "json-nan": (b'{"email": NaN, "timestamp": Infinity, "events": [NaN]}', "application/json"),
    "json-1e300": (b'{"timestamp": 1e300, "at": -1e300, "sample_size": 1e999}', "application/json"),
    "json-huge-int": (b'{"sample_size": 1' + b"0" * 5000 + b"}", "application/json"),
    "json-surrogate": (b'{"email": "\\udfff@x.test", "name": "\\ud800"}', "application/json"),
    "not-utf8": (b"\xff\xfe\xfa" * 100, "application/json"),
    "form-deep-keys": (b"a[b][c][d]=1&" * 150, "application/x-www-form-urlencoded"),
    "form-not-utf8": (b"email=%ff%fe&lists=%c0", "application/x-www-form-urlencoded"),
    "multipart-garbage": (b"--x\r\nContent-Disposition: form-data\r\n\r\n", "multipart/form-data"),
    "csv-deep": (b"[" * 1000, "text/csv"),
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE_BODIES))
def test_every_operation_answers_hostile_bodies_without_5xx_or_trace(api, hostile) -> None:
    """The same assertions for bodies no generator aims at: each sent to every operation."""
    from werkzeug.test import Client

    container, app = api
    body, content_type = HOSTILE_BODIES[hostile]
    spec = yaml.safe_load(SPEC.read_text())
    for method, path in sorted(described()):
        security = spec["paths"][path][method.lower()].get("security") or []
        key = KEYS[next(iter(security[0]))] if security else "none"
        concrete = path.replace("{token}", "x").replace("{campaign_id}", "c1")
        concrete = concrete.replace("{action}", "preview")
        before = recorded(container)
        response = Client(app).open(
            concrete,
            method=method,
            data=body,
            content_type=content_type,
            headers={"Authorization": f"Bearer {key}"},
        )
        shown = f"{hostile}: {method} {concrete} -> {response.status_code} {response.data[:200]!r}"
        assert response.status_code < 500, shown
        assert not TRACE.search(response.data), shown
        if response.status_code >= 400:
            assert recorded(container) == before, shown


# --- the description is accurate ---------------------------------------------------------------


def described() -> set[tuple[str, str]]:
    spec = yaml.safe_load(SPEC.read_text())
    methods = {"get", "post", "put", "patch", "delete"}
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m in methods}


def served() -> set[tuple[str, str]]:
    """Every route the HTTP functions answer, from the code that routes them."""
    prefixes = {f.route for f in topology.FUNCTIONS if f.is_http and f.route}
    assert prefixes == {
        "/signup", "/confirm", "/preferences", "/unsubscribe", "/t", "/webhooks", "/admin",
        "/events",
    }, "a new HTTP function: describe it in docs/openapi.yaml and list its routes here"  # fmt: skip
    pages = {("GET", "/signup"), ("POST", "/signup"), ("GET", "/confirm")}
    pages |= {(m, p) for p in ("/preferences", "/unsubscribe") for m in ("GET", "POST")}
    tracking = {("GET", "/t/o/{token}"), ("GET", "/t/c/{token}")}
    webhooks = {("POST", f"/webhooks/{p}") for p in [*ENABLING_SETTINGS, "local"]}
    admin = {
        ("GET", "/admin/campaigns"),
        ("POST", "/admin/campaigns"),
        ("GET", "/admin/campaigns/{campaign_id}"),
        ("POST", "/admin/campaigns/{campaign_id}/{action}"),
        ("POST", "/admin/subscribers/import"),
    }
    return pages | tracking | webhooks | admin | {("POST", "/events")}


def test_the_description_lists_exactly_the_served_routes() -> None:
    assert described() == served()


def test_every_admin_action_is_described() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    operation = spec["paths"]["/admin/campaigns/{campaign_id}/{action}"]["post"]
    (action,) = [p for p in operation["parameters"] if p["name"] == "action"]
    assert tuple(action["schema"]["enum"]) == ACTIONS


@pytest.mark.parametrize(("method", "path"), sorted(described()))
def test_every_described_route_is_answered_by_a_function(api, method, path) -> None:
    """Not 404 'no such route': each described path reaches the function that serves it."""
    _, app = api
    from werkzeug.test import Client

    concrete = path.replace("{token}", "x").replace("{campaign_id}", "c1")
    concrete = concrete.replace("{action}", "pause")
    response = Client(app).open(concrete, method=method, headers={"Authorization": "Bearer x"})
    assert response.status_code != 405, (method, path)
    if response.status_code == 404:  # the function's own 404 for an unknown thing is fine
        assert b"no admin route" not in response.data and b"unknown tracking" not in response.data
        assert response.headers.get("Content-Type", "").startswith(
            ("application/json", "text/html")
        )
