"""SES through SNS: certificate URL rules, signature versions 1 and 2, the certificate cache,
topic allow-list, freshness, SubscriptionConfirmation, and SES event normalization.

The certificate is our own (a self-signed RSA certificate) served by FakeSnsHttp, a fake of
the network; the URL validation runs on the real-looking SNS URLs."""

from __future__ import annotations

import json

import pytest
from webhook_signing import (
    CERT_URL,
    SUBSCRIBE_URL,
    TOPIC,
    FakeSnsHttp,
    SnsSigner,
    iso,
    ses_bounce,
    sns_notification,
)

from shared.adapters.esp.ses_webhook import SesWebhook
from shared.adapters.esp.sns_certificates import check_sns_url
from shared.domain import feedback as fb
from shared.domain.errors import InvalidInput, Unauthorized

NOW = 1_790_000_000.0


@pytest.fixture(scope="module")
def signer() -> SnsSigner:
    return SnsSigner(NOW)


@pytest.fixture
def http(signer: SnsSigner) -> FakeSnsHttp:
    return FakeSnsHttp(signer.pem)


@pytest.fixture
def webhook(http: FakeSnsHttp) -> SesWebhook:
    return SesWebhook((TOPIC,), http)


def raw(envelope: dict) -> bytes:
    return json.dumps(envelope).encode()


def bounce(bounce_type: str = "Permanent", status: str = "5.1.1", **mail: object) -> dict:
    return ses_bounce("ann@example.com", bounce_type, status, f"smtp; 550 {status} x", NOW, **mail)


# --- URL rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [CERT_URL, "https://sns.us-east-1.amazonaws.com/x.pem",
     "https://sns.us-gov-west-1.amazonaws.com/x.pem", "https://SNS.eu-west-1.amazonaws.com/x.pem"],
)  # fmt: skip
def test_sns_hosts_are_accepted(url: str) -> None:
    assert check_sns_url(url, "SigningCertURL") == url


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
        "https://evil.com@sns.us-east-1.amazonaws.com/x.pem",
        "https://user:pw@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
        "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.amazonaws.com/x.pem",
        "https://s3.us-east-1.amazonaws.com/x.pem",
        "https://xsns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com./x.pem",
        "https://sns.us-east-1.amazonaws.com.cn/x.pem",
        "https://sns.us-east-1.am\u0430zonaws.com/x.pem",  # Cyrillic a
        "https://sns.us-east-1.amazonaws.com /x.pem",
        "//sns.us-east-1.amazonaws.com/x.pem",
        "",
        None,
    ],
)
def test_anything_else_is_refused(url: object) -> None:
    with pytest.raises(Unauthorized):
        check_sns_url(url, "SigningCertURL")


# --- verification ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_both_signature_versions_verify(
    signer: SnsSigner, webhook: SesWebhook, version: str
) -> None:
    envelope = signer.sign(sns_notification(bounce(), NOW), version)
    (event,) = webhook.parse({}, raw(envelope), NOW)
    assert (event.provider, event.kind, event.bounce_type) == ("ses", fb.BOUNCE, fb.HARD)


def test_certificates_are_fetched_once_per_url(
    signer: SnsSigner, webhook: SesWebhook, http: FakeSnsHttp
) -> None:
    for n in range(3):
        envelope = signer.sign(sns_notification(bounce(), NOW, message_id=f"sns-{n}"))
        webhook.parse({}, raw(envelope), NOW)
    assert http.fetched == [CERT_URL]


@pytest.mark.parametrize(
    "change",
    [{"Message": json.dumps({"eventType": "Complaint"})}, {"MessageId": "other"},
     {"TopicArn": TOPIC.replace("123456789012", "999999999999")}, {"Signature": "AAAA"},
     {"SignatureVersion": "3"}, {"SigningCertURL": "https://evil.example/cert.pem"},
     {"SigningCertURL": "https://sns.eu-west-1.amazonaws.com/cert.txt"},
     {"Timestamp": iso(NOW - 301)}, {"Signature": None}, {"Type": "Surprise"}],
    ids=["message", "message-id", "foreign-topic", "signature", "version", "cert-host",
         "cert-not-pem", "stale", "unsigned", "type"],
)  # fmt: skip
def test_any_change_after_signing_is_unauthorized(
    signer: SnsSigner, webhook: SesWebhook, change: dict
) -> None:
    envelope = {**signer.sign(sns_notification(bounce(), NOW)), **change}
    with pytest.raises(Unauthorized):
        webhook.parse({}, raw(envelope), NOW)


def test_a_topic_not_allowed_is_refused_before_any_certificate_fetch(
    signer: SnsSigner, http: FakeSnsHttp
) -> None:
    envelope = signer.sign(sns_notification(bounce(), NOW))
    with pytest.raises(Unauthorized, match="TopicArn"):
        SesWebhook(("arn:aws:sns:eu-west-1:1:other",), http).parse({}, raw(envelope), NOW)
    assert http.fetched == []


def test_an_expired_certificate_is_refused(http: FakeSnsHttp) -> None:
    old = SnsSigner(NOW - 90 * 86400, valid_days=30)
    envelope = old.sign(sns_notification(bounce(), NOW))
    with pytest.raises(Unauthorized, match="not valid now"):
        SesWebhook((TOPIC,), FakeSnsHttp(old.pem)).parse({}, raw(envelope), NOW)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"Type": "Notification"}'])
def test_a_body_without_a_signature_is_unauthorized(webhook: SesWebhook, body: bytes) -> None:
    with pytest.raises(Unauthorized):
        webhook.parse({}, body, NOW)


# --- subscription confirmation -----------------------------------------------------------


def confirmation(subscribe_url: str = SUBSCRIBE_URL) -> dict:
    return {"Type": "SubscriptionConfirmation", "MessageId": "sub-1", "Token": "tok",
            "TopicArn": TOPIC, "Message": "You have chosen to subscribe...",
            "SubscribeURL": subscribe_url, "Timestamp": iso(NOW)}  # fmt: skip


def test_a_subscription_is_confirmed_after_the_checks(
    signer: SnsSigner, webhook: SesWebhook, http: FakeSnsHttp
) -> None:
    assert webhook.parse({}, raw(signer.sign(confirmation())), NOW) == []
    assert http.confirmed == [SUBSCRIBE_URL]


def test_a_forged_confirmation_is_not_followed(
    signer: SnsSigner, webhook: SesWebhook, http: FakeSnsHttp
) -> None:
    envelope = {**signer.sign(confirmation()), "SubscribeURL": "https://evil.example/"}
    with pytest.raises(Unauthorized):
        webhook.parse({}, raw(envelope), NOW)
    assert http.confirmed == []


def test_a_signed_confirmation_to_a_foreign_host_is_not_followed(
    signer: SnsSigner, webhook: SesWebhook, http: FakeSnsHttp
) -> None:
    envelope = signer.sign(confirmation("https://sns.eu-west-1.amazonaws.com.evil.com/?x"))
    with pytest.raises(Unauthorized, match="SubscribeURL"):
        webhook.parse({}, raw(envelope), NOW)
    assert http.confirmed == []


# --- SES events --------------------------------------------------------------------------


def parse(signer: SnsSigner, webhook: SesWebhook, message: dict) -> list[fb.FeedbackEvent]:
    return webhook.parse({}, raw(signer.sign(sns_notification(message, NOW))), NOW)


@pytest.mark.parametrize(
    ("bounce_type", "status", "expected"),
    [("Permanent", "5.1.1", fb.HARD), ("Transient", "4.2.2", fb.SOFT),
     ("Transient", "5.7.1", fb.SOFT), ("Undetermined", "5.1.1", fb.HARD),
     ("Undetermined", "4.4.7", fb.SOFT)],
)  # fmt: skip
def test_bounce_types(
    signer: SnsSigner, webhook: SesWebhook, bounce_type: str, status: str, expected: str
) -> None:
    (event,) = parse(signer, webhook, bounce(bounce_type, status))
    assert (event.bounce_type, event.enhanced_code, event.smtp_code) == (expected, status, "550")
    assert event.provider_event_id == "sns-1:ann@example.com"


def test_correlation_from_tags_and_headers(signer: SnsSigner, webhook: SesWebhook) -> None:
    tagged = bounce(tags={"message_id": ["m1@mailpipe.test"], "campaign_id": ["c9"]})
    (event,) = parse(signer, webhook, tagged)
    assert (event.message_id, event.campaign_id) == ("m1@mailpipe.test", "c9")
    headed = bounce(commonHeaders={"messageId": "<m2@mailpipe.test>"})
    (event,) = parse(signer, webhook, headed)
    assert event.message_id == "m2@mailpipe.test"


def test_other_event_types(signer: SnsSigner, webhook: SesWebhook) -> None:
    mail = {"timestamp": iso(NOW - 9), "messageId": "x", "destination": ["ann@example.com"]}
    cases = {
        "Complaint": ("complaint", {"complainedRecipients": [{"emailAddress": "ann@example.com"}],
                                    "timestamp": iso(NOW)}, fb.COMPLAINT),
        "Delivery": ("delivery", {"recipients": ["ann@example.com"], "timestamp": iso(NOW),
                                  "smtpResponse": "250 2.6.0 ok"}, fb.DELIVERED),
        "Open": ("open", {"ipAddress": "17.1.2.3", "userAgent": "Mozilla/5.0",
                          "timestamp": iso(NOW)}, fb.OPEN),
        "Click": ("click", {"link": "https://example.com/", "timestamp": iso(NOW)}, fb.CLICK),
        "DeliveryDelay": ("deliveryDelay", {"delayType": "MailboxFull", "timestamp": iso(NOW),
            "delayedRecipients": [{"emailAddress": "ann@example.com", "status": "4.2.2"}]},
            fb.DEFERRED),
        "Reject": ("reject", {"reason": "Bad content"}, fb.DROPPED),
    }  # fmt: skip
    for kind, (key, detail, expected) in cases.items():
        (event,) = parse(signer, webhook, {"eventType": kind, key: detail, "mail": mail})
        assert event.kind == expected, kind
    (click,) = parse(signer, webhook, {"eventType": "Click", "click": cases["Click"][1],
                                       "mail": mail})  # fmt: skip
    assert click.url == "https://example.com/"
    assert parse(signer, webhook, {"eventType": "Send", "send": {}, "mail": mail}) == []


def test_one_event_per_recipient(signer: SnsSigner, webhook: SesWebhook) -> None:
    message = bounce()
    message["bounce"]["bouncedRecipients"].append(
        {"emailAddress": "bob@example.com", "status": "5.1.1", "action": "failed"}
    )
    events = parse(signer, webhook, message)
    assert [e.email for e in events] == ["ann@example.com", "bob@example.com"]
    assert len({e.provider_event_id for e in events}) == 2


@pytest.mark.parametrize(
    "message",
    ["not json", json.dumps([1]), json.dumps({"eventType": "Bounce", "mail": "x"}),
     json.dumps({"eventType": "Bounce", "bounce": {"bouncedRecipients": []},
                 "mail": {"timestamp": "2026-01-01T00:00:00Z"}})],
    ids=["not-json", "not-object", "mail-not-object", "no-recipients"],
)  # fmt: skip
def test_a_signed_but_malformed_message_is_invalid_input(
    signer: SnsSigner, webhook: SesWebhook, message: str
) -> None:
    envelope = {**sns_notification({}, NOW), "Message": message}
    with pytest.raises(InvalidInput):
        webhook.parse({}, raw(signer.sign(envelope)), NOW)
