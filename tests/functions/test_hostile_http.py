"""Hostile input at the HTTP edge (issue 16): every route answers 4xx naming the limit, never a
5xx or a stack trace; a body over a route's limit is refused before it is read, and a route
that takes no body never reads one."""

from __future__ import annotations

import io
from typing import Any

import pytest

from shared.dashboard.app import create_dashboard_app

JSON = "application/json"
DEEP = b"[" * 1000 + b"]" * 1000
DEEP_OBJECT = b'{"a":' * 1000 + b"1" + b"}" * 1000
ADMIN = {"Authorization": "Bearer test-admin-key"}
EVENTS = {"Authorization": "Bearer events-key"}


@pytest.fixture
def c(make_container):
    return make_container(
        events_api_key="events-key",
        mailgun_webhook_signing_key="mg-key",
        ses_topic_arns=("arn:aws:sns:eu-west-1:123456789012:t",),
    )


def assert_clean_4xx(response: Any, status: int = 400) -> None:
    assert response.status_code == status, response.data[:300]
    assert b"Traceback" not in response.data and b'File "' not in response.data


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
@pytest.mark.parametrize(
    ("function", "path", "headers", "status"),  # the webhooks: before looking for a signature
    [
        ("signup", "/", {}, 400),
        ("preferences", "/?token=x", {}, 400),
        ("webhooks", "/mailgun", {}, 400),
        ("webhooks", "/ses", {}, 400),
        ("events", "/", EVENTS, 400),
        ("admin", "/campaigns", ADMIN, 400),
    ],
)
def test_json_nested_a_thousand_deep_is_a_400_naming_the_limit(
    c, function_client, function, path, headers, status, body
) -> None:
    response = function_client(function).post(path, data=body, content_type=JSON, headers=headers)
    assert_clean_4xx(response, status)
    assert "at most 32 levels" in response.json["error"]
    assert c.documents.query("subscribers") == []


def test_json_within_the_depth_limit_is_still_parsed(c, function_client) -> None:
    body = b'{"email": "a@example.com", "first_name": "Ann", "x": ' + b"[" * 30 + b"]" * 30 + b"}"
    response = function_client("signup").post("/", data=body, content_type=JSON)
    assert response.status_code == 202


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(c, function_client, literal) -> None:
    body = b'{"email": "a@example.com", "first_name": ' + literal + b"}"
    response = function_client("signup").post("/", data=body, content_type=JSON)
    assert_clean_4xx(response)
    assert "not a JSON value" in response.json["error"]


def test_a_lone_surrogate_is_refused(c, function_client) -> None:
    body = b'{"email": "a\\ud800@example.com"}'
    response = function_client("signup").post("/", data=body, content_type=JSON)
    assert_clean_4xx(response)
    assert "not Unicode text" in response.json["error"]


def test_too_many_form_fields_are_refused(c, function_client) -> None:
    body = "&".join(f"f{n}=1" for n in range(500)) + "&email=a%40example.com"
    response = function_client("signup").post(
        "/", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert_clean_4xx(response, 413)
    assert c.documents.query("subscribers") == []


@pytest.mark.parametrize(
    ("function", "path"), [("tracking", "/o/sometoken"), ("confirm", "/?token=x")]
)
def test_a_route_without_a_body_refuses_a_declared_one_before_reading_it(
    c, function_client, function, path
) -> None:
    stream = io.BytesIO(b"ab")
    response = function_client(function).get(
        path,
        input_stream=stream,
        environ_overrides={"CONTENT_LENGTH": str(200 * 1024 * 1024)},
    )
    assert_clean_4xx(response, 413)
    assert "takes no request body" in response.json["error"]
    assert stream.tell() == 0  # not a byte read


def test_a_route_without_a_body_never_reads_a_chunked_one(c, function_client) -> None:
    stream = io.BytesIO(b"x" * (4 * 1024 * 1024))
    response = function_client("tracking").get(
        "/o/sometoken",
        input_stream=stream,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert stream.tell() == 0  # functions-framework's after-request read found nothing to read


def test_a_declared_body_over_the_limit_is_413_before_reading(c, function_client) -> None:
    stream = io.BytesIO(b"{}")
    response = function_client("webhooks").post(
        "/mailgun",
        input_stream=stream,
        content_type=JSON,
        environ_overrides={"CONTENT_LENGTH": str(20 * 1024 * 1024)},
    )
    assert_clean_4xx(response, 413)
    assert response.json["error"] == "request body is larger than 1 MB"
    assert stream.tell() == 0


def test_admin_import_of_a_hostile_body_is_a_clean_answer(c, function_client) -> None:
    response = function_client("admin").post(
        "/subscribers/import", data=DEEP, content_type="text/csv", headers=ADMIN
    )
    assert response.status_code < 500
    assert b"Traceback" not in response.data


def test_events_before_1970_are_refused(c, function_client) -> None:
    event = {
        "subscriber": {"email": "a@example.com"},
        "name": "cart_abandoned",
        "timestamp": "0001-01-01T00:00:00+14:00",
        "idempotency_key": "k1",
    }
    response = function_client("events").post("/", json=event, headers=EVENTS)
    assert_clean_4xx(response)
    assert "after 1970" in response.json["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/", "/campaigns/c1", "/deliverability", "/growth"])
def test_dashboard_pages_answer_405_to_other_methods(c, method, path) -> None:
    app = create_dashboard_app(lambda: c.dashboards)
    response = app.test_client().open(path, method=method, data=b"{}")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert b"Traceback" not in response.data
