"""SesWebhook: Amazon SES feedback delivered by Amazon SNS -> FeedbackEvents.

Verification (before the content is read): the SNS envelope must carry a signature; its
`Timestamp` must be within 5 minutes of now; its `TopicArn` must be one of
MAILPIPE_SES_TOPIC_ARNS; its `SigningCertURL` must be https on sns.<region>.amazonaws.com
(see sns_certificates); the signature (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) must
hold over SNS's canonical string. SNS retries a failed HTTP delivery within about a minute by
default, so the 5-minute window does not lose retries; a longer custom delivery policy would.

`SubscriptionConfirmation` is confirmed by a GET of its SubscribeURL (host-checked too) only
after all of that passed; `UnsubscribeConfirmation` is acknowledged. A `Notification` carries
one SES event (identity notifications say `notificationType`, configuration-set event
publishing says `eventType`) for one or more recipients; each recipient becomes one event whose
provider id is the SNS MessageId plus the recipient, which SNS repeats when it retries.
Mailpipe's correlation fields come from SES message tags (event publishing) or the original
Message-ID header when SES includes headers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from shared.adapters.esp.sns_certificates import SnsCertificates, SnsHttp, check_sns_url
from shared.adapters.esp.webhook_verification import (
    iso_seconds,
    json_body,
    require_fresh,
    strip_angles,
)
from shared.domain import feedback as fb
from shared.domain import strict_json
from shared.domain.errors import InvalidInput, Unauthorized
from shared.domain.feedback import FeedbackEvent

NOTIFICATION = "Notification"
SUBSCRIBE = "SubscriptionConfirmation"
UNSUBSCRIBE = "UnsubscribeConfirmation"
_SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIBE: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def canonical_string(envelope: Mapping[str, Any]) -> bytes:
    """What SNS signs: "Name\\nvalue\\n" for each signed field present, in SNS's fixed order."""
    names = _SIGNED_FIELDS[str(envelope["Type"])]
    parts = [f"{n}\n{envelope[n]}\n" for n in names if envelope.get(n) is not None]
    return "".join(parts).encode()


class SesWebhook:
    name = "ses"

    def __init__(self, topic_arns: Iterable[str], http: SnsHttp) -> None:
        self._topics = frozenset(topic_arns)
        self._http = http
        self._certificates = SnsCertificates(http)

    def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> list[FeedbackEvent]:
        envelope = self._verified(body, now)
        kind = envelope["Type"]
        if kind == SUBSCRIBE:
            self._http.confirm_subscription(
                check_sns_url(envelope.get("SubscribeURL"), "SubscribeURL")
            )
            return []
        if kind == UNSUBSCRIBE:
            return []
        message = json_body(str(envelope.get("Message", "")).encode(), "SES notification")
        if not isinstance(message, dict):
            raise InvalidInput("SES notification: Message must be a JSON object")
        return ses_events(message, str(envelope["MessageId"]))

    def _verified(self, body: bytes, now: float) -> dict[str, Any]:
        try:
            envelope = strict_json.loads(body, "SNS message")
        except strict_json.TooDeep:
            raise
        except InvalidInput as exc:
            raise Unauthorized("missing SNS signature: body is not a JSON SNS message") from exc
        if not isinstance(envelope, dict) or envelope.get("Type") not in _SIGNED_FIELDS:
            raise Unauthorized("missing SNS signature: not an SNS message")
        missing = [
            n for n in ("Signature", "SignatureVersion", "SigningCertURL", "MessageId",
                        "Timestamp", "TopicArn") if not envelope.get(n)
        ]  # fmt: skip
        if missing:
            raise Unauthorized(f"unsigned SNS message: missing {', '.join(missing)}")
        try:
            signed_at = iso_seconds(envelope["Timestamp"], "SNS Timestamp")
        except InvalidInput as exc:
            raise Unauthorized(str(exc)) from exc
        require_fresh(signed_at, now)
        if envelope["TopicArn"] not in self._topics:
            raise Unauthorized("SNS TopicArn is not one of MAILPIPE_SES_TOPIC_ARNS")
        self._check_signature(envelope, now)
        return envelope

    def _check_signature(self, envelope: Mapping[str, Any], now: float) -> None:
        algorithm = _HASHES.get(str(envelope["SignatureVersion"]))
        if algorithm is None:
            raise Unauthorized("SNS SignatureVersion must be 1 or 2")
        key = self._certificates.public_key(envelope["SigningCertURL"], now)
        try:
            signature = base64.b64decode(str(envelope["Signature"]), validate=True)
            key.verify(signature, canonical_string(envelope), padding.PKCS1v15(), algorithm())
        except (InvalidSignature, binascii.Error, ValueError, KeyError) as exc:
            raise Unauthorized("invalid SNS signature") from exc


# --- SES events -----------------------------------------------------------------------------

_BOUNCE_VERDICT = {"Permanent": fb.HARD, "Transient": fb.SOFT}  # "Undetermined": the codes decide


def ses_events(message: Mapping[str, Any], sns_message_id: str) -> list[FeedbackEvent]:
    """One FeedbackEvent per recipient of an SES bounce/complaint/delivery/... record."""
    kind = message.get("eventType") or message.get("notificationType")
    mail = message.get("mail")
    if not isinstance(mail, dict):
        raise InvalidInput("SES notification: 'mail' must be an object", field="mail")
    builder = _BUILDERS.get(str(kind))
    if builder is None:  # Send, Rendering Failure, Subscription, AmazonSnsSubscriptionSucceeded
        return []
    detail = message.get(_DETAIL_KEY.get(str(kind), ""), {})
    if not isinstance(detail, dict):
        raise InvalidInput(f"SES notification: the {kind} object is missing")
    common = _correlation(mail)
    return [
        FeedbackEvent(
            provider="ses",
            provider_event_id=f"{sns_message_id}:{fields['email']}",
            occurred_at=iso_seconds(
                detail.get("timestamp") or mail.get("timestamp"), "SES timestamp"
            ),
            **common,
            **fields,
        )
        for fields in builder(detail, mail)
    ]


def _bounce(detail: Mapping[str, Any], mail: Mapping[str, Any]) -> list[dict[str, Any]]:
    verdict = _BOUNCE_VERDICT.get(str(detail.get("bounceType")))
    rows = []
    for recipient in _recipients(detail, "bouncedRecipients"):
        smtp_code, enhanced_in_text = fb.codes_in(recipient.get("diagnosticCode"))
        enhanced = fb.clean_code(recipient.get("status")) or enhanced_in_text
        rows.append({
            "kind": fb.BOUNCE,
            "email": recipient["emailAddress"],
            "bounce_type": fb.bounce_type(verdict, smtp_code, enhanced),
            "smtp_code": smtp_code,
            "enhanced_code": enhanced,
            "detail": _text(recipient.get("diagnosticCode") or detail.get("bounceSubType")),
        })  # fmt: skip
    return rows


def _delay(detail: Mapping[str, Any], mail: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for recipient in _recipients(detail, "delayedRecipients"):
        smtp_code, enhanced = fb.codes_in(recipient.get("diagnosticCode"))
        rows.append({"kind": fb.DEFERRED, "email": recipient["emailAddress"],
                     "smtp_code": smtp_code,
                     "enhanced_code": fb.clean_code(recipient.get("status")) or enhanced,
                     "detail": _text(detail.get("delayType"))})  # fmt: skip
    return rows


def _complaint(detail: Mapping[str, Any], mail: Mapping[str, Any]) -> list[dict[str, Any]]:
    feedback_type = _text(detail.get("complaintFeedbackType"))
    return [
        {"kind": fb.COMPLAINT, "email": r["emailAddress"], "detail": feedback_type}
        for r in _recipients(detail, "complainedRecipients")
    ]


def _delivery(detail: Mapping[str, Any], mail: Mapping[str, Any]) -> list[dict[str, Any]]:
    response = _text(detail.get("smtpResponse"))
    smtp_code, enhanced = fb.codes_in(response)
    return [
        {"kind": fb.DELIVERED, "email": email, "smtp_code": smtp_code, "enhanced_code": enhanced,
         "detail": response}
        for email in _addresses(detail.get("recipients"))
    ]  # fmt: skip


def _engagement(kind: str) -> Callable[[Mapping[str, Any], Mapping[str, Any]], list[dict]]:
    def build(detail: Mapping[str, Any], mail: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [
            {"kind": kind, "email": email, "url": _text(detail.get("link")),
             "user_agent": _text(detail.get("userAgent")), "ip": _text(detail.get("ipAddress"))}
            for email in _addresses(mail.get("destination"))
        ]  # fmt: skip

    return build


def _reject(detail: Mapping[str, Any], mail: Mapping[str, Any]) -> list[dict[str, Any]]:
    reason = _text(detail.get("reason"))
    return [
        {"kind": fb.DROPPED, "email": email, "detail": reason}
        for email in _addresses(mail.get("destination"))
    ]


_BUILDERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], list[dict[str, Any]]]] = {
    "Bounce": _bounce,
    "Complaint": _complaint,
    "Delivery": _delivery,
    "DeliveryDelay": _delay,
    "Reject": _reject,
    "Open": _engagement(fb.OPEN),
    "Click": _engagement(fb.CLICK),
}
_DETAIL_KEY = {
    "Bounce": "bounce", "Complaint": "complaint", "Delivery": "delivery",
    "DeliveryDelay": "deliveryDelay", "Reject": "reject", "Open": "open", "Click": "click",
}  # fmt: skip


def _correlation(mail: Mapping[str, Any]) -> dict[str, Any]:
    """message_id and campaign_id from SES tags, else the original Message-ID header."""
    tags = _mapping(mail.get("tags"))
    common = _mapping(mail.get("commonHeaders"))
    message_id = _first(tags.get("message_id")) or strip_angles(common.get("messageId"))
    extra = {"ses_message_id": str(mail.get("messageId", ""))}
    subscriber_id = _first(tags.get("subscriber_id"))
    if subscriber_id:
        extra["subscriber_id"] = subscriber_id
    return {
        "message_id": message_id,
        "campaign_id": _first(tags.get("campaign_id")),
        "extra": extra,
    }


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _recipients(detail: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = detail.get(key)
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"SES notification: '{key}' must be a non-empty list", field=key)
    if not all(isinstance(r, dict) and isinstance(r.get("emailAddress"), str) for r in items):
        raise InvalidInput(f"SES notification: every entry of '{key}' needs an emailAddress")
    return items


def _addresses(value: object) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput("SES notification: recipients must be a non-empty list of addresses")
    return value


def _first(value: object) -> str | None:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return value if isinstance(value, str) and value else None


def _text(value: object) -> str | None:
    return str(value)[:2000] if isinstance(value, str | int) and str(value) else None
