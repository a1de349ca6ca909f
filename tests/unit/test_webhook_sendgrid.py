"""SendGrid's Signed Event Webhook: ECDSA P-256 over timestamp + raw body, then normalization."""

from __future__ import annotations

import json

import pytest
from webhook_signing import SendGridSigner

from shared.adapters.esp.sendgrid_webhook import SendGridWebhook
from shared.domain import feedback as fb
from shared.domain.errors import ConfigurationError, InvalidInput, Unauthorized

NOW = 1_790_000_000.0


@pytest.fixture(scope="module")
def signer() -> SendGridSigner:
    return SendGridSigner()


@pytest.fixture
def webhook(signer: SendGridSigner) -> SendGridWebhook:
    return SendGridWebhook(signer.public_key_base64)


def body(*events: dict) -> bytes:
    return json.dumps(list(events)).encode()


def event(kind: str, **fields: object) -> dict:
    return {"email": "ann@example.com", "timestamp": int(NOW) - 5, "event": kind,
            "sg_event_id": f"sg-{kind}", "sg_message_id": "sgm.1", **fields}  # fmt: skip


def test_a_signed_batch_is_normalized(signer: SendGridSigner, webhook: SendGridWebhook) -> None:
    raw = body(
        event("processed"),
        event("delivered", response="250 2.0.0 OK", message_id="m1@mailpipe.test",
              campaign_id="c1"),
        event("bounce", type="bounce", status="5.1.1", reason="550 5.1.1 no such user"),
        event("bounce", type="blocked", status="5.7.1", reason="554 5.7.1 blocked",
              **{"sg_event_id": "sg-blocked"}),
        event("deferred", response="421 4.7.0 try later", attempt="2"),
        event("dropped", reason="Bounced Address"),
        event("spamreport"),
        event("open", useragent="Mozilla/5.0", ip="17.58.0.1", sg_machine_open=True),
        event("click", url="https://example.com/a", useragent="Firefox/130"),
        event("unsubscribe"),
        event("group_unsubscribe", **{"sg_event_id": "sg-group"}),
        event("group_resubscribe"),
    )  # fmt: skip
    events = webhook.parse(signer.headers(raw, NOW), raw, NOW)
    by_id = {e.provider_event_id: e for e in events}
    assert len(events) == 10  # processed and group_resubscribe are skipped
    assert by_id["sg-delivered"].kind == fb.DELIVERED
    assert by_id["sg-delivered"].message_id == "m1@mailpipe.test"
    assert by_id["sg-delivered"].campaign_id == "c1"
    hard = by_id["sg-bounce"]
    assert (hard.bounce_type, hard.smtp_code, hard.enhanced_code) == (fb.HARD, "550", "5.1.1")
    blocked = by_id["sg-blocked"]
    assert (blocked.bounce_type, blocked.enhanced_code) == (fb.SOFT, "5.7.1")
    assert by_id["sg-deferred"].kind == fb.DEFERRED
    assert by_id["sg-deferred"].smtp_code == "421"
    assert by_id["sg-dropped"].kind == fb.DROPPED
    assert by_id["sg-spamreport"].kind == fb.COMPLAINT
    assert by_id["sg-open"].extra["provider_machine_open"] is True
    assert by_id["sg-click"].url == "https://example.com/a"
    assert by_id["sg-group"].kind == fb.UNSUBSCRIBE
    assert all(e.provider == "sendgrid" and e.email == "ann@example.com" for e in events)


def test_the_smtp_id_header_is_the_message_id_fallback(
    signer: SendGridSigner, webhook: SendGridWebhook
) -> None:
    raw = body(event("delivered", **{"smtp-id": "<abc@mailpipe.test>"}))
    (parsed,) = webhook.parse(signer.headers(raw, NOW), raw, NOW)
    assert parsed.message_id == "abc@mailpipe.test"


def test_missing_signature_is_unauthorized(webhook: SendGridWebhook) -> None:
    with pytest.raises(Unauthorized, match="missing"):
        webhook.parse({}, body(event("delivered")), NOW)


def test_an_altered_body_is_unauthorized(signer: SendGridSigner, webhook: SendGridWebhook) -> None:
    raw = body(event("delivered"))
    headers = signer.headers(raw, NOW)
    with pytest.raises(Unauthorized, match="invalid"):
        webhook.parse(headers, raw.replace(b"ann@", b"bob@"), NOW)


def test_another_key_is_unauthorized(signer: SendGridSigner) -> None:
    raw = body(event("delivered"))
    other = SendGridWebhook(SendGridSigner().public_key_base64)
    with pytest.raises(Unauthorized):
        other.parse(signer.headers(raw, NOW), raw, NOW)


def test_a_garbage_signature_is_unauthorized(
    signer: SendGridSigner, webhook: SendGridWebhook
) -> None:
    raw = body(event("delivered"))
    headers = {**signer.headers(raw, NOW), "X-Twilio-Email-Event-Webhook-Signature": "%%%"}
    with pytest.raises(Unauthorized):
        webhook.parse(headers, raw, NOW)


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_a_stale_timestamp_is_unauthorized(
    signer: SendGridSigner, webhook: SendGridWebhook, age: int
) -> None:
    raw = body(event("delivered"))
    with pytest.raises(Unauthorized, match="stale"):
        webhook.parse(signer.headers(raw, NOW - age), raw, NOW)


def test_a_timestamp_within_five_minutes_is_accepted(
    signer: SendGridSigner, webhook: SendGridWebhook
) -> None:
    raw = body(event("delivered"))
    assert len(webhook.parse(signer.headers(raw, NOW - 299), raw, NOW)) == 1


@pytest.mark.parametrize(
    "raw",
    [b"not json", b'{"an": "object"}', b"[1, 2]",
     json.dumps([{"event": "bounce", "email": "a@example.com", "timestamp": 1}]).encode()],
    ids=["not-json", "object", "not-objects", "no-event-id"],
)  # fmt: skip
def test_a_signed_but_malformed_body_is_invalid_input(
    signer: SendGridSigner, webhook: SendGridWebhook, raw: bytes
) -> None:
    with pytest.raises(InvalidInput):
        webhook.parse(signer.headers(raw, NOW), raw, NOW)


def test_a_key_that_is_not_p256_der_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        SendGridWebhook("bm90IGEga2V5")
