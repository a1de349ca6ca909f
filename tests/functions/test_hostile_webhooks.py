"""Hostile but properly signed webhook payloads (issue 16): what a webhook accepts is already a
usable feedback event, so nothing it publishes can fail the feedback or warehouse stage and end
in a dead-letter hold. NaN, ±1e300 and pre-1970 or post-9999 times, text that is not text, and
signature timestamps that no clock can compare are refused at the edge (4xx)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webhook_signing import (
    TOPIC,
    FakeSnsHttp,
    SendGridSigner,
    SnsSigner,
    iso,
    mailgun_body,
    ses_bounce,
    sns_notification,
)

from shared import topology
from shared.bootstrap import Container

JSON = "application/json"
MAILGUN_KEY = "mailgun-signing-key-for-hostile-tests"
EMAIL = "ann@example.com"
STAGES = ("feedback-on-esp-feedback", "warehouse-on-analytics-events")


@pytest.fixture(scope="module")
def sendgrid() -> SendGridSigner:
    return SendGridSigner()


@pytest.fixture(scope="module")
def sns() -> SnsSigner:
    return SnsSigner(time.time())


@pytest.fixture
def c(make_container: Callable[..., Container], sendgrid: SendGridSigner, sns: SnsSigner):
    return make_container(
        overrides={"sns_http": FakeSnsHttp(sns.pem)},
        sendgrid_webhook_public_key=sendgrid.public_key_base64,
        mailgun_webhook_signing_key=MAILGUN_KEY,
        ses_topic_arns=(TOPIC,),
    )


def sendgrid_item(**changes: Any) -> dict[str, Any]:
    item = {"email": EMAIL, "timestamp": int(time.time()), "event": "bounce", "type": "bounce",
            "status": "5.1.1", "sg_event_id": secrets.token_hex(8)}  # fmt: skip
    return {**item, **changes}


def sendgrid_request(signer: SendGridSigner, raw: bytes, stamp: str | None = None) -> dict:
    stamp = stamp or str(int(time.time()))
    signature = signer.private_key.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    return {
        "data": raw,
        "headers": {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        },
        "content_type": JSON,
    }


def mailgun_event(**changes: Any) -> dict[str, Any]:
    event = {"event": "failed", "severity": "permanent", "id": secrets.token_hex(6),
             "timestamp": time.time(), "recipient": EMAIL,
             "delivery-status": {"code": 550, "enhanced-code": "5.1.1"}}  # fmt: skip
    return {**event, **changes}


def mailgun_request(event: dict[str, Any]) -> dict:
    raw = mailgun_body(MAILGUN_KEY, event, time.time(), secrets.token_hex(25))
    return {"data": raw, "content_type": JSON}


def mailgun_signed_at(stamp: str) -> dict:
    token = secrets.token_hex(25)
    signature = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256)
    signed = {"timestamp": stamp, "token": token, "signature": signature.hexdigest()}
    payload = {"signature": signed, "event-data": mailgun_event()}
    return {"data": json.dumps(payload).encode(), "content_type": JSON}


def ses_request(sns: SnsSigner, **bounce: Any) -> dict:
    now = time.time()
    message = ses_bounce(EMAIL, "Permanent", "5.1.1", "550 5.1.1 unknown", now)
    message["bounce"].update(bounce)
    envelope = sns.sign(sns_notification(message, now, message_id=secrets.token_hex(8)))
    return {"data": json.dumps(envelope).encode(), "content_type": "text/plain"}


def raw_json(text: str) -> bytes:
    return text.encode()


def hostile_requests(sendgrid: SendGridSigner, sns: SnsSigner) -> dict[str, tuple[str, dict]]:
    """name -> (provider, request) for every payload; each is signed as the provider signs."""
    sg_template = json.dumps([sendgrid_item(timestamp="TS")])

    def sg_with_timestamp(literal: str) -> dict:
        return sendgrid_request(sendgrid, sg_template.replace('"TS"', literal).encode())

    surrogate = sg_template.replace('"TS"', "1").replace(EMAIL, "a\\ud800@x.test")

    def sg(**changes: Any) -> dict:
        return sendgrid_request(sendgrid, json.dumps([sendgrid_item(**changes)]).encode())

    return {
        "sendgrid-nan": ("sendgrid", sg_with_timestamp("NaN")),
        "sendgrid-infinity": ("sendgrid", sg_with_timestamp("Infinity")),
        "sendgrid-1e300": ("sendgrid", sg_with_timestamp("1e300")),
        "sendgrid-minus-1e300": ("sendgrid", sg_with_timestamp("-1e300")),
        "sendgrid-1e999": ("sendgrid", sg_with_timestamp("1e999")),
        "sendgrid-huge-int": ("sendgrid", sg_with_timestamp("1" + "0" * 400)),
        "sendgrid-nan-text": ("sendgrid", sg(timestamp="nan")),
        "sendgrid-year-10000": ("sendgrid", sg(timestamp=253402300800 + 10)),
        "sendgrid-negative": ("sendgrid", sg(timestamp=-5)),
        "sendgrid-surrogate-email": (
            "sendgrid",
            sendgrid_request(sendgrid, surrogate.encode()),
        ),
        "sendgrid-email-object": ("sendgrid", sg(email={"a": 1})),
        "sendgrid-signed-at-nan": (
            "sendgrid",
            sendgrid_request(sendgrid, json.dumps([sendgrid_item()]).encode(), stamp="nan"),
        ),
        "mailgun-nan": ("mailgun", mailgun_request(mailgun_event(timestamp="nan"))),
        "mailgun-1e300": ("mailgun", mailgun_request(mailgun_event(timestamp=1e300))),
        "mailgun-minus-1e300": ("mailgun", mailgun_request(mailgun_event(timestamp=-1e300))),
        "mailgun-inf-text": ("mailgun", mailgun_request(mailgun_event(timestamp="-inf"))),
        "mailgun-signed-at-nan": ("mailgun", mailgun_signed_at("nan")),
        "mailgun-signed-at-inf": ("mailgun", mailgun_signed_at("inf")),
        "ses-year-1": ("ses", ses_request(sns, timestamp="0001-01-01T00:00:00+14:00")),
        "ses-year-9999": ("ses", ses_request(sns, timestamp="9999-12-31T23:59:59-14:00")),
        "ses-not-a-time": ("ses", ses_request(sns, timestamp="nan")),
    }


def drain_with_retries(c: Container, deliver: Any) -> None:
    """Deliver each stage's messages as the bus workers do: a non-2xx answer is a nack, so a
    message that keeps failing reaches the stage's dead-letter hold."""
    for _ in range(50):
        progress = 0
        for name in STAGES:
            function = topology.subscription(name).function
            for d in c.bus.pull(name, 50):
                progress += 1
                response = deliver(function, d.data, d.attributes)
                if response.status_code < 300:
                    c.bus.ack(name, d.message_id)
                else:
                    c.bus.nack(name, d.message_id, f"answered {response.status_code}")
        if not progress and not any(c.bus.depths()[n]["backoff"] for n in STAGES):
            return
        time.sleep(0.05)


def test_hostile_signed_payloads_are_refused_and_leave_no_dead_letter(
    c: Container, function_client: Any, deliver: Any, sendgrid: SendGridSigner, sns: SnsSigner
) -> None:
    webhooks = function_client("webhooks")
    answers = {}
    for name, (provider, request) in hostile_requests(sendgrid, sns).items():
        response = webhooks.post(f"/{provider}", **request)
        assert b"Traceback" not in response.data, name
        answers[name] = response.status_code
    assert all(400 <= status < 500 for status in answers.values()), answers
    assert c.bus.depths()["feedback-on-esp-feedback"]["ready"] == 0  # nothing was published
    drain_with_retries(c, deliver)
    assert c.bus.counts()["feedback-on-esp-feedback"] == 0
    assert c.bus.counts()["warehouse-on-analytics-events"] == 0


def test_the_same_providers_still_accept_usable_events(
    c: Container, function_client: Any, deliver: Any, sendgrid: SendGridSigner, sns: SnsSigner
) -> None:
    webhooks = function_client("webhooks")
    requests = [
        ("sendgrid", sendgrid_request(sendgrid, json.dumps([sendgrid_item()]).encode())),
        ("mailgun", mailgun_request(mailgun_event())),
        ("ses", ses_request(sns, timestamp=iso(time.time()))),
    ]
    for provider, request in requests:
        assert webhooks.post(f"/{provider}", **request).status_code == 200, provider
    assert c.bus.depths()["feedback-on-esp-feedback"]["ready"] == 3
    drain_with_retries(c, deliver)
    assert c.bus.counts()["feedback-on-esp-feedback"] == 0
    rows = c.warehouse.query("SELECT provider FROM events WHERE event_type = 'bounce'", {})
    assert sorted(r["provider"] for r in rows) == ["mailgun", "sendgrid", "ses"]
