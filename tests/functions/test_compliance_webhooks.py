"""POST /webhooks/<provider> through the real function, then the feedback and warehouse
functions over the local bus: signatures first, one row per provider event, and suppression
that holds across providers and campaigns at send time."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest
from compliance_flow import drain, waiting
from support import RecordingMailer
from webhook_signing import (
    TOPIC,
    FakeSnsHttp,
    SendGridSigner,
    SnsSigner,
    mailgun_body,
    ses_bounce,
    sns_notification,
)

from shared.bootstrap import Container
from shared.domain import events as ev
from shared.domain.messages import MARKETING, SendBatch
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.ports import OutgoingEmail
from shared.repositories import suppressions as reasons

JSON = "application/json"
MAILGUN_KEY = "mailgun-signing-key-for-tests"
EMAIL = "ann@example.com"
FEEDBACK = "feedback-on-esp-feedback"


@pytest.fixture(scope="module")
def sendgrid() -> SendGridSigner:
    return SendGridSigner()


@pytest.fixture(scope="module")
def sns() -> SnsSigner:
    return SnsSigner(time.time())


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def c(
    make_container: Callable[..., Container],
    sendgrid: SendGridSigner,
    sns: SnsSigner,
    mailer: RecordingMailer,
) -> Container:
    container = make_container(
        overrides={"sns_http": FakeSnsHttp(sns.pem), "mailer": mailer},
        sendgrid_webhook_public_key=sendgrid.public_key_base64,
        mailgun_webhook_signing_key=MAILGUN_KEY,
        ses_topic_arns=(TOPIC,),
    )
    container.subscribers.save(
        Subscriber(container.subscribers.id_for(EMAIL), EMAIL, status=CONFIRMED)
    )
    return container


@pytest.fixture
def webhooks(function_client: Callable[[str], Any]) -> Any:
    return function_client("webhooks")


def sendgrid_bounce(event_id: str = "sg-1") -> bytes:
    return json.dumps(
        [
            {
                "email": EMAIL,
                "timestamp": int(time.time()),
                "event": "bounce",
                "type": "bounce",
                "status": "5.1.1",
                "sg_event_id": event_id,
                "message_id": "m1@mailpipe.test",
                "campaign_id": "c1",
            }
        ]
    ).encode()


def mailgun_failed(severity: str = "permanent") -> dict:
    return {"event": "failed", "severity": severity, "id": "mg-1", "timestamp": time.time(),
            "recipient": EMAIL, "delivery-status": {"code": 550, "enhanced-code": "5.1.1"},
            "user-variables": {"campaign_id": "c1", "message_id": "m1@mailpipe.test"}}  # fmt: skip


def warehouse_rows(c: Container, event_type: str) -> list[dict]:
    sql = "SELECT * FROM events WHERE event_type = $t ORDER BY event_id"
    return c.warehouse.query(sql, {"t": event_type})


# --- verification before anything ---------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "body", "headers"),
    [("sendgrid", b"[]", {}),
     ("sendgrid", b"[]", {"X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ==",
                          "X-Twilio-Email-Event-Webhook-Timestamp": "1"}),
     ("mailgun", json.dumps({"event-data": mailgun_failed()}).encode(), {}),
     ("ses", b'{"Type": "Notification", "Message": "{}"}', {})],
    ids=["sendgrid-missing", "sendgrid-invalid", "mailgun-missing", "ses-unsigned"],
)  # fmt: skip
def test_missing_or_invalid_signatures_get_401_and_nothing_is_recorded(
    c: Container, webhooks: Any, provider: str, body: bytes, headers: dict
) -> None:
    response = webhooks.post(f"/{provider}", data=body, headers=headers, content_type=JSON)
    assert response.status_code == 401
    assert "error" in response.get_json()
    assert waiting(c, FEEDBACK) == 0


def test_a_stale_signature_gets_401(c: Container, webhooks: Any, sendgrid: SendGridSigner) -> None:
    raw = sendgrid_bounce()
    response = webhooks.post(
        "/sendgrid", data=raw, headers=sendgrid.headers(raw, time.time() - 600)
    )
    assert response.status_code == 401
    assert "stale" in response.get_json()["error"]
    assert waiting(c, FEEDBACK) == 0


def test_a_replayed_mailgun_request_gets_401(c: Container, webhooks: Any) -> None:
    raw = mailgun_body(MAILGUN_KEY, mailgun_failed(), time.time(), secrets.token_hex(25))
    assert webhooks.post("/mailgun", data=raw, content_type=JSON).status_code == 200
    assert webhooks.post("/mailgun", data=raw, content_type=JSON).status_code == 401
    assert waiting(c, FEEDBACK) == 1


def test_a_signed_but_malformed_body_gets_400(
    c: Container, webhooks: Any, sendgrid: SendGridSigner
) -> None:
    raw = b'{"not": "a list"}'
    response = webhooks.post("/sendgrid", data=raw, headers=sendgrid.headers(raw, time.time()))
    assert response.status_code == 400
    assert waiting(c, FEEDBACK) == 0


def test_an_unconfigured_provider_is_404_saying_how_to_enable_it(
    make_container: Callable[..., Container], webhooks: Any
) -> None:
    make_container()
    response = webhooks.post("/sendgrid", data=b"[]", content_type=JSON)
    assert response.status_code == 404
    assert "MAILPIPE_SENDGRID_WEBHOOK_PUBLIC_KEY" in response.get_json()["error"]


# --- recorded once ---------------------------------------------------------------------------


def test_a_retried_sendgrid_delivery_gives_one_warehouse_row(
    c: Container, webhooks: Any, deliver: Any, sendgrid: SendGridSigner
) -> None:
    raw = sendgrid_bounce()
    for _ in range(2):  # SendGrid retries the same batch when it saw no 2xx in time
        response = webhooks.post("/sendgrid", data=raw, headers=sendgrid.headers(raw, time.time()))
        assert response.status_code == 200
        assert response.get_json() == {"status": "accepted", "events": 1}
    assert waiting(c, FEEDBACK) == 2
    drain(c, deliver)
    (row,) = warehouse_rows(c, ev.BOUNCE)
    assert (row["provider"], row["reason"], row["campaign_id"]) == ("sendgrid", "hard", "c1")
    assert row["message_id"] == "m1@mailpipe.test"
    assert c.suppressions.reason(EMAIL) == reasons.HARD_BOUNCE


def test_a_retried_sns_delivery_gives_one_warehouse_row(
    c: Container, webhooks: Any, deliver: Any, sns: SnsSigner
) -> None:
    now = time.time()
    envelope = sns.sign(sns_notification(ses_bounce(EMAIL, "Transient", "4.2.2", "x", now), now))
    for _ in range(2):
        response = webhooks.post("/ses", data=json.dumps(envelope), content_type="text/plain")
        assert response.status_code == 200
    drain(c, deliver)
    (row,) = warehouse_rows(c, ev.BOUNCE)
    assert (row["provider"], row["reason"]) == ("ses", "soft")
    assert c.suppressions.reason(EMAIL) is None  # one soft bounce is not enough


# --- policy across providers and campaigns -----------------------------------------------------


def send_batch(c: Container, campaign_id: str, audience_at: float) -> SendBatch:
    email = OutgoingEmail(
        message_id=f"{campaign_id}-ann@mailpipe.test", sender="hello@mailpipe.test",
        recipient=EMAIL, subject="News", html="<p>hi</p>", text="hi", headers={}, raw=b"x",
        subscriber_id=c.subscribers.id_for(EMAIL),
    )  # fmt: skip
    return SendBatch(f"b-{campaign_id}", MARKETING, audience_at, [email], campaign_id=campaign_id)


def test_a_mailgun_hard_bounce_suppresses_other_campaigns_at_send_time(
    c: Container, webhooks: Any, deliver: Any, mailer: RecordingMailer
) -> None:
    audience_read_at = time.time() - 60  # the campaign's audience was read before the bounce
    raw = mailgun_body(MAILGUN_KEY, mailgun_failed(), time.time(), secrets.token_hex(25))
    assert webhooks.post("/mailgun", data=raw, content_type=JSON).status_code == 200
    drain(c, deliver)
    assert c.suppressions.reason(EMAIL) == reasons.HARD_BOUNCE
    batch = send_batch(c, "c2-other-campaign", audience_read_at)
    assert deliver("send", batch.encode(), {"encoding": "zlib+json"}).status_code < 300
    assert mailer.sent == []
    assert c.ledger.get(batch.batch_id).outcomes == {c.subscribers.id_for(EMAIL): "suppressed"}


def test_an_ses_complaint_unsubscribes_and_suppresses_at_once(
    c: Container, webhooks: Any, deliver: Any, sns: SnsSigner
) -> None:
    now = time.time()
    message = {"eventType": "Complaint", "mail": {"timestamp": "2026-11-30T00:00:00Z",
               "messageId": "x", "destination": [EMAIL]},
               "complaint": {"complainedRecipients": [{"emailAddress": EMAIL}],
                             "timestamp": "2026-11-30T00:00:01Z"}}  # fmt: skip
    envelope = sns.sign(sns_notification(message, now))
    assert webhooks.post("/ses", data=json.dumps(envelope)).status_code == 200
    drain(c, deliver)
    subscriber = c.subscribers.get(c.subscribers.id_for(EMAIL))
    assert (subscriber.status, subscriber.suppressed) == ("unsubscribed", reasons.COMPLAINT)
    assert c.suppressions.reason(EMAIL) == reasons.COMPLAINT
    assert len(warehouse_rows(c, ev.COMPLAINT)) == 1


def test_webhooks_accept_post_only(c: Container, webhooks: Any) -> None:
    assert webhooks.get("/sendgrid").status_code == 405
