"""The Pub/Sub-triggered functions, fed captured push payloads from tests/events/ through
functions-framework exactly as a push subscription (or Eventarc) delivers them."""

from __future__ import annotations

import email
import email.policy
import json

import pytest
from support import RecordingMailer, load_event

from shared import topology
from shared.domain.errors import TransientError
from shared.domain.messages import RenderRequest, SendBatch
from shared.domain.subscriber import PENDING, Subscriber


def post_captured(function_client, name: str, function: str):
    captured = load_event(name)
    f = topology.function(function)
    assert captured["topic"] == f.trigger_topic
    return function_client(function).post(
        f"/projects/mailpipe-prod/topics/{f.trigger_topic}",
        data=json.dumps(captured["body"]),
        content_type="application/json",
    )


def pulled(container, topic: str) -> list[bytes]:
    sub = topology.subscriptions_of(topic)[0].name
    return [d.data for d in container.bus.pull(sub, 100, lease_s=0.001)]


def test_preference_sync_mails_a_confirmation_link(function_client, container):
    container.subscribers.create(
        Subscriber(id="SUBSCRIBER_ID", email="pat@example.com", first_name="Pat", status=PENDING)
    )
    response = post_captured(function_client, "subscriber_signed_up.json", "preference-sync")
    assert response.status_code == 200
    [raw] = pulled(container, topology.RENDER_REQUESTS)
    request = RenderRequest.decode(raw)
    assert request.template == "confirm" and request.kind == "transactional"
    assert "/confirm/?token=" in request.recipients[0].variables["confirm_url"]
    events = [e for m in pulled(container, topology.ANALYTICS_EVENTS) for e in json.loads(m)]
    assert [e["event_type"] for e in events if e["event_type"] != "subscriber_changed"] == [
        "signup"
    ]


def test_preference_sync_retry_mails_the_same_link(function_client, container):
    container.subscribers.create(Subscriber(id="SUBSCRIBER_ID", email="pat@example.com"))
    post_captured(function_client, "subscriber_signed_up.json", "preference-sync")
    post_captured(function_client, "subscriber_signed_up.json", "preference-sync")
    first, second = (RenderRequest.decode(r) for r in pulled(container, topology.RENDER_REQUESTS))
    assert first.batch_id == second.batch_id
    assert first.recipients[0].variables == second.recipients[0].variables


def test_render_builds_a_complete_marketing_message(function_client, container):
    assert (
        post_captured(function_client, "render_request_welcome.json", "render").status_code == 200
    )
    [raw] = pulled(container, topology.SEND_REQUESTS)
    [mail] = SendBatch.decode(raw).emails
    parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert parsed["Subject"] == "Welcome, Wendy!"
    assert (
        parsed["List-Unsubscribe"].startswith("<http://")
        and "/unsubscribe/?token=" in (parsed["List-Unsubscribe"])
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed.get_body(("plain",)) is not None
    html = parsed.get_body(("html",)).get_content()
    assert "/t/c/" in html and "/t/o/" in html  # tracked link and open pixel
    assert 'style="' in html and "<style>" not in html  # CSS inlined


def test_send_sends_once_even_when_delivered_twice(function_client, make_container):
    mailer = RecordingMailer()
    make_container(overrides={"mailer": mailer})
    assert post_captured(function_client, "send_batch.json", "send").status_code == 200
    assert post_captured(function_client, "send_batch.json", "send").status_code == 200
    assert [m.recipient for m in mailer.sent] == ["sam@example.com"]


def test_send_failure_is_retried_not_acknowledged(function_client, make_container):
    make_container(overrides={"mailer": RecordingMailer(TransientError("provider down"))})
    assert post_captured(function_client, "send_batch.json", "send").status_code == 500


def test_feedback_hard_bounce_suppresses(function_client, container):
    assert (
        post_captured(function_client, "feedback_hard_bounce.json", "feedback").status_code == 200
    )
    assert container.suppressions.reason("gone@example.com") == "hard_bounce"
    [raw] = pulled(container, topology.ANALYTICS_EVENTS)
    assert json.loads(raw)[0]["event_type"] == "bounce"


def test_warehouse_stores_events_once(function_client, container):
    for _ in range(2):
        assert (
            post_captured(function_client, "analytics_events.json", "warehouse").status_code == 200
        )
    rows = container.warehouse.query("SELECT event_id, event_type FROM events ORDER BY event_id")
    assert rows == [
        {"event_id": "ev-1", "event_type": "send"},
        {"event_id": "ev-2", "event_type": "open"},
    ]


def test_warehouse_accepts_a_binary_mode_cloudevent(function_client, container):
    captured = load_event("analytics_events.binary_cloudevent.json")
    response = function_client("warehouse").post(
        "/", data=json.dumps(captured["data"]), headers=captured["headers"]
    )
    assert response.status_code == 200
    assert container.warehouse.query("SELECT event_type FROM events") == [{"event_type": "click"}]


def test_dispatch_sweep_is_acknowledged(function_client, container):
    assert post_captured(function_client, "dispatch_sweep.json", "dispatch").status_code == 200


@pytest.mark.parametrize("function", ["preference-sync"])
def test_a_malformed_message_is_acknowledged_and_publishes_nothing(
    function_client, container, function
):
    assert post_captured(function_client, "malformed_json.json", function).status_code == 200
    assert pulled(container, topology.RENDER_REQUESTS) == []
    assert pulled(container, topology.ANALYTICS_EVENTS) == []
