"""SendGridWebhook: SendGrid's Signed Event Webhook -> FeedbackEvents.

Verification (before anything else): ECDSA P-256 with SHA-256 over the value of
`X-Twilio-Email-Event-Webhook-Timestamp` followed by the raw body; the base64 DER signature is
in `X-Twilio-Email-Event-Webhook-Signature`; the public key is the base64 DER
(SubjectPublicKeyInfo) string SendGrid shows in its settings (MAILPIPE_SENDGRID_WEBHOOK_PUBLIC_KEY).
A timestamp more than 5 minutes away from now is refused, so a captured request cannot be
replayed later; within the window a replay repeats the same `sg_event_id`s, which every reader
deduplicates.

The body is a JSON array of events. `sg_event_id` is the provider event id; the custom args
Mailpipe sends (message_id, subscriber_id, campaign_id) arrive as top-level fields.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.adapters.esp.webhook_verification import (
    epoch_seconds,
    header,
    json_body,
    require_fresh,
    strip_angles,
    text_field,
)
from shared.domain import feedback as fb
from shared.domain.errors import ConfigurationError, InvalidInput, Unauthorized
from shared.domain.feedback import FeedbackEvent

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# SendGrid event -> our kind; events not listed (processed, group_resubscribe, new kinds SendGrid
# may add) are acknowledged and skipped rather than failing the whole batch.
_KINDS = {
    "delivered": fb.DELIVERED,
    "deferred": fb.DEFERRED,
    "bounce": fb.BOUNCE,
    "dropped": fb.DROPPED,
    "spamreport": fb.COMPLAINT,
    "open": fb.OPEN,
    "click": fb.CLICK,
    "unsubscribe": fb.UNSUBSCRIBE,
    "group_unsubscribe": fb.UNSUBSCRIBE,
}
# SendGrid's bounce `type`: "bounce" means the address was rejected, "blocked" that the message
# was (reputation, content, rate): the address itself may be fine, so it counts as soft.
_BOUNCE_VERDICT = {"bounce": fb.HARD, "blocked": fb.SOFT}


def load_public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """The verification key from SendGrid's base64 DER text; ConfigurationError if unusable."""
    try:
        key = serialization.load_der_public_key(base64.b64decode(encoded.strip(), validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ConfigurationError(
            "MAILPIPE_SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER public key"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ConfigurationError("MAILPIPE_SENDGRID_WEBHOOK_PUBLIC_KEY must be an ECDSA P-256 key")
    return key


class SendGridWebhook:
    name = "sendgrid"

    def __init__(self, public_key_base64: str) -> None:
        self._key = load_public_key(public_key_base64)

    def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> list[FeedbackEvent]:
        self._verify(headers, body, now)
        items = json_body(body, "SendGrid webhook")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise InvalidInput("SendGrid webhook: body must be a JSON array of event objects")
        return [event for item in items if (event := self._event(item)) is not None]

    def _verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        signature, timestamp = header(headers, SIGNATURE_HEADER), header(headers, TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise Unauthorized(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        try:
            der = base64.b64decode(signature, validate=True)
            self._key.verify(der, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, binascii.Error) as exc:
            raise Unauthorized("invalid SendGrid webhook signature") from exc
        require_fresh(epoch_seconds(timestamp), now)

    def _event(self, item: dict[str, Any]) -> FeedbackEvent | None:
        kind = _KINDS.get(str(item.get("event", "")))
        if kind is None:
            return None
        what = "SendGrid event"
        smtp_code, enhanced = _codes(item)
        verdict = _BOUNCE_VERDICT.get(str(item.get("type", "bounce")))
        return FeedbackEvent(
            provider=self.name,
            provider_event_id=text_field(item, "sg_event_id", what),
            kind=kind,
            email=text_field(item, "email", what),
            occurred_at=_occurred_at(item),
            message_id=strip_angles(item.get("message_id")) or strip_angles(item.get("smtp-id")),
            campaign_id=_text_or_none(item.get("campaign_id")),
            bounce_type=fb.bounce_type(verdict, smtp_code, enhanced) if kind == fb.BOUNCE else None,
            smtp_code=smtp_code,
            enhanced_code=enhanced,
            url=_text_or_none(item.get("url")),
            user_agent=_text_or_none(item.get("useragent")),
            ip=_text_or_none(item.get("ip")),
            detail=_text_or_none(item.get("reason") or item.get("response")),
            extra=_extra(item),
        )


def _codes(item: dict[str, Any]) -> tuple[str | None, str | None]:
    """SendGrid puts the enhanced code in `status` and the server's reply in `reason`/`response`."""
    reply, enhanced_in_text = fb.codes_in(_text_or_none(item.get("reason") or item.get("response")))
    status = fb.clean_code(item.get("status"))
    enhanced = status if status and "." in status else enhanced_in_text
    return reply, enhanced


def _occurred_at(item: dict[str, Any]) -> float:
    try:
        return float(item["timestamp"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput("SendGrid event: field 'timestamp' is missing or not a number") from exc


def _text_or_none(value: object) -> str | None:
    return str(value)[:2000] if isinstance(value, str | int) and str(value) else None


def _extra(item: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if item.get("sg_machine_open") is True:  # SendGrid's own Apple MPP flag on opens
        extra["provider_machine_open"] = True
    for key in ("subscriber_id", "sg_message_id", "bounce_classification"):
        if isinstance(item.get(key), str):
            extra[key] = item[key]
    return extra
