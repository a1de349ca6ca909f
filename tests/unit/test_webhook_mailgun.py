"""Mailgun webhooks: HMAC-SHA256(timestamp + token), replayed tokens refused, normalization.
The replay store is the real SQLite document store."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from webhook_signing import mailgun_body

from shared.adapters.esp.mailgun_webhook import MailgunWebhook
from shared.adapters.local.sqlite_documents import SqliteDocuments
from shared.domain import feedback as fb
from shared.domain.errors import InvalidInput, Unauthorized
from shared.repositories.tokens import WEBHOOK_TOKENS, SeenWebhookTokens

KEY = "key-mailgun-webhook-test"
NOW = 1_790_000_000.0


@pytest.fixture
def documents(tmp_path: Path) -> SqliteDocuments:
    return SqliteDocuments(tmp_path / "documents.sqlite3")


@pytest.fixture
def webhook(documents: SqliteDocuments) -> MailgunWebhook:
    return MailgunWebhook(KEY, SeenWebhookTokens(documents))


def event_data(kind: str, **fields: object) -> dict:
    return {"event": kind, "id": f"id-{kind}", "timestamp": NOW - 3.25,
            "recipient": "ann@example.com",
            "user-variables": {"message_id": "m1@mailpipe.test", "campaign_id": "c1",
                               "subscriber_id": "s1"}, **fields}  # fmt: skip


def signed(data: dict, at: float = NOW, token: str | None = None) -> bytes:
    return mailgun_body(KEY, data, at, token or secrets.token_hex(25))


def parse_one(webhook: MailgunWebhook, data: dict) -> fb.FeedbackEvent:
    (parsed,) = webhook.parse({}, signed(data), NOW)
    return parsed


def test_a_permanent_failure_is_a_hard_bounce_with_its_codes(webhook: MailgunWebhook) -> None:
    status = {"code": 550, "enhanced-code": "5.1.1", "message": "550 5.1.1 no such user"}
    parsed = parse_one(
        webhook, event_data("failed", severity="permanent", **{"delivery-status": status})
    )
    assert (parsed.kind, parsed.bounce_type) == (fb.BOUNCE, fb.HARD)
    assert (parsed.smtp_code, parsed.enhanced_code) == ("550", "5.1.1")
    assert (parsed.message_id, parsed.campaign_id) == ("m1@mailpipe.test", "c1")
    assert parsed.provider_event_id == f"id-failed:{NOW - 3.25:.6f}"


def test_a_temporary_failure_is_a_soft_bounce(webhook: MailgunWebhook) -> None:
    status = {"code": 452, "message": "452 4.2.2 mailbox full"}
    parsed = parse_one(
        webhook, event_data("failed", severity="temporary", **{"delivery-status": status})
    )
    assert (parsed.bounce_type, parsed.smtp_code, parsed.enhanced_code) == (fb.SOFT, "452", "4.2.2")


def test_a_failure_without_severity_is_judged_by_its_code(webhook: MailgunWebhook) -> None:
    parsed = parse_one(webhook, event_data("failed", **{"delivery-status": {"code": 554}}))
    assert parsed.bounce_type == fb.HARD


def test_mailguns_own_suppression_is_a_drop_not_a_bounce(webhook: MailgunWebhook) -> None:
    parsed = parse_one(
        webhook, event_data("failed", severity="permanent", reason="suppress-bounce")
    )
    assert parsed.kind == fb.DROPPED


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("delivered", fb.DELIVERED), ("opened", fb.OPEN), ("clicked", fb.CLICK),
     ("complained", fb.COMPLAINT), ("unsubscribed", fb.UNSUBSCRIBE), ("rejected", fb.DROPPED)],
)  # fmt: skip
def test_event_kinds(webhook: MailgunWebhook, kind: str, expected: str) -> None:
    assert parse_one(webhook, event_data(kind)).kind == expected


def test_click_details_and_mailguns_bot_verdict(webhook: MailgunWebhook) -> None:
    data = event_data("clicked", url="https://example.com/x", ip="192.0.2.7",
                      **{"client-info": {"user-agent": "curl/8", "bot": "generic"}})  # fmt: skip
    parsed = parse_one(webhook, data)
    assert (parsed.url, parsed.ip, parsed.user_agent) == ("https://example.com/x", "192.0.2.7",
                                                          "curl/8")  # fmt: skip
    assert parsed.extra["provider_bot"] == "generic"


def test_accepted_events_are_acknowledged_and_skipped(webhook: MailgunWebhook) -> None:
    assert webhook.parse({}, signed(event_data("accepted")), NOW) == []


def test_a_replayed_token_is_refused(webhook: MailgunWebhook, documents: SqliteDocuments) -> None:
    raw = signed(event_data("delivered"), token="a" * 50)
    assert len(webhook.parse({}, raw, NOW)) == 1
    with pytest.raises(Unauthorized, match="already used"):
        webhook.parse({}, raw, NOW + 1)
    (stored,) = documents.query(WEBHOOK_TOKENS)
    assert "a" * 50 not in stored[0]  # only the token's digest is kept
    assert stored[1]["expires_at"] > NOW


def test_a_bad_signature_records_no_token(
    webhook: MailgunWebhook, documents: SqliteDocuments
) -> None:
    payload = json.loads(signed(event_data("delivered")))
    payload["signature"]["signature"] = "0" * 64
    with pytest.raises(Unauthorized, match="invalid"):
        webhook.parse({}, json.dumps(payload).encode(), NOW)
    assert documents.query(WEBHOOK_TOKENS) == []


def test_a_tampered_timestamp_is_unauthorized(webhook: MailgunWebhook) -> None:
    payload = json.loads(signed(event_data("delivered")))
    payload["signature"]["timestamp"] = str(int(NOW) + 1)
    with pytest.raises(Unauthorized):
        webhook.parse({}, json.dumps(payload).encode(), NOW)


def test_a_stale_signature_is_unauthorized(webhook: MailgunWebhook) -> None:
    with pytest.raises(Unauthorized, match="stale"):
        webhook.parse({}, signed(event_data("delivered"), at=NOW - 301), NOW)


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"event-data": {}}',
                                 b'{"signature": {"token": "t"}}'])  # fmt: skip
def test_a_body_without_a_usable_signature_is_unauthorized(
    webhook: MailgunWebhook, raw: bytes
) -> None:
    with pytest.raises(Unauthorized):
        webhook.parse({}, raw, NOW)


@pytest.mark.parametrize(
    "data", [None, {"event": "delivered", "id": "x", "timestamp": NOW},
             {"event": "delivered", "recipient": "a@example.com", "timestamp": NOW},
             {"event": "delivered", "id": "x", "recipient": "a@example.com", "timestamp": "?"}],
    ids=["no-event-data", "no-recipient", "no-id", "bad-timestamp"],
)  # fmt: skip
def test_a_signed_but_malformed_event_is_invalid_input(
    webhook: MailgunWebhook, data: dict | None
) -> None:
    with pytest.raises(InvalidInput):
        webhook.parse({}, signed(data), NOW)  # type: ignore[arg-type]
