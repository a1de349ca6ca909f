"""MailgunWebhook: Mailgun's JSON webhooks -> FeedbackEvents.

Verification (before anything else): the body's `signature` object holds `timestamp`, `token`
and `signature` = hex HMAC-SHA256(MAILPIPE_MAILGUN_WEBHOOK_SIGNING_KEY, timestamp + token).
A timestamp more than 5 minutes from now is refused, and so is a token seen before (kept in
the document store's `webhook_tokens` for the freshness window), so a captured request cannot
be replayed. The signature sits inside the JSON, so a body that is not a JSON object with a
`signature` object is Unauthorized (nothing could be verified), not malformed.

One request carries one event in `event-data`. Its `id` is only unique within a day, so the
provider event id is `id` plus the event's own timestamp; a retried delivery repeats both.
Mailpipe's variables (message_id, subscriber_id, campaign_id) arrive in `user-variables`.
A token is spent once its signature and timestamp hold, even if publishing then fails with a
503. That cannot lose the event: Mailgun retries 10 minutes later at the earliest, beyond the
5-minute window, so a retry that is accepted at all carries a fresh timestamp and token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from shared.adapters.esp.webhook_verification import (
    MAX_AGE_S,
    epoch_seconds,
    json_body,
    require_fresh,
    strip_angles,
    text_field,
)
from shared.domain import feedback as fb
from shared.domain.errors import InvalidInput, Unauthorized
from shared.domain.feedback import FeedbackEvent
from shared.domain.strict_json import TooDeep
from shared.repositories.tokens import SeenWebhookTokens

_KINDS = {
    "delivered": fb.DELIVERED,
    "failed": fb.BOUNCE,
    "rejected": fb.DROPPED,
    "opened": fb.OPEN,
    "clicked": fb.CLICK,
    "unsubscribed": fb.UNSUBSCRIBE,
    "complained": fb.COMPLAINT,
}
_SEVERITY = {"permanent": fb.HARD, "temporary": fb.SOFT}
# Mailgun refused to send because the address is on its own suppression list: nothing bounced.
_SUPPRESSED_REASONS = frozenset({"suppress-bounce", "suppress-unsubscribe", "suppress-complaint"})


class MailgunWebhook:
    name = "mailgun"

    def __init__(self, signing_key: str, seen_tokens: SeenWebhookTokens) -> None:
        self._key = signing_key.encode()
        self._seen = seen_tokens

    def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> list[FeedbackEvent]:
        payload = self._verified(body, now)
        data = payload.get("event-data")
        if not isinstance(data, dict):
            raise InvalidInput("Mailgun webhook: 'event-data' must be an object", "event-data")
        event = self._event(data)
        return [event] if event else []

    def _verified(self, body: bytes, now: float) -> dict[str, Any]:
        try:
            payload = json_body(body, "Mailgun webhook")
        except TooDeep:
            raise
        except InvalidInput as exc:
            raise Unauthorized("missing Mailgun signature: body is not JSON") from exc
        signature = payload.get("signature") if isinstance(payload, dict) else None
        if not isinstance(signature, dict):
            raise Unauthorized("missing Mailgun signature object")
        token, given = str(signature.get("token") or ""), str(signature.get("signature") or "")
        timestamp = str(signature.get("timestamp") or "")
        if not (token and given and timestamp):
            raise Unauthorized("incomplete Mailgun signature: timestamp, token and signature")
        expected = hmac.new(self._key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), given.lower().encode()):
            raise Unauthorized("invalid Mailgun webhook signature")
        signed_at = epoch_seconds(timestamp)
        require_fresh(signed_at, now)
        if not self._seen.first_use(self.name, token, signed_at + 2 * MAX_AGE_S):
            raise Unauthorized("Mailgun webhook token was already used (replay refused)")
        return payload

    def _event(self, data: dict[str, Any]) -> FeedbackEvent | None:
        kind = _KINDS.get(str(data.get("event", "")))
        if kind is None:  # accepted, stored, list events: nothing to act on
            return None
        what = "Mailgun event"
        status = _mapping(data.get("delivery-status"))
        if kind == fb.BOUNCE and data.get("reason") in _SUPPRESSED_REASONS:
            kind = fb.DROPPED
        smtp_code, enhanced = _codes(status)
        variables = _mapping(data.get("user-variables"))
        client = _mapping(data.get("client-info"))
        occurred_at = _occurred_at(data)
        verdict = _SEVERITY.get(str(data.get("severity", "")))
        return FeedbackEvent(
            provider=self.name,
            provider_event_id=f"{text_field(data, 'id', what)}:{occurred_at:.6f}",
            kind=kind,
            email=text_field(data, "recipient", what),
            occurred_at=occurred_at,
            message_id=strip_angles(variables.get("message_id")) or _header_message_id(data),
            campaign_id=_text(variables.get("campaign_id")),
            bounce_type=fb.bounce_type(verdict, smtp_code, enhanced) if kind == fb.BOUNCE else None,
            smtp_code=smtp_code,
            enhanced_code=enhanced,
            url=_text(data.get("url")),
            user_agent=_text(client.get("user-agent")),
            ip=_text(data.get("ip")),
            detail=_text(status.get("description") or status.get("message") or data.get("reason")),
            extra=_extra(data, variables, client),
        )


def _codes(status: Mapping[str, Any]) -> tuple[str | None, str | None]:
    reply = fb.clean_code(status.get("code"))
    enhanced = fb.clean_code(status.get("enhanced-code") or status.get("bounce-code"))
    if enhanced is None:
        enhanced = fb.codes_in(_text(status.get("message") or status.get("description")))[1]
    return reply, enhanced


def _occurred_at(data: Mapping[str, Any]) -> float:
    try:
        return float(data["timestamp"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput("Mailgun event: field 'timestamp' is missing or not a number") from exc


def _header_message_id(data: Mapping[str, Any]) -> str | None:
    headers = _mapping(_mapping(data.get("message")).get("headers"))
    return strip_angles(headers.get("message-id"))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return str(value)[:2000] if isinstance(value, str | int) and str(value) else None


def _extra(
    data: Mapping[str, Any], variables: Mapping[str, Any], client: Mapping[str, Any]
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if client.get("bot"):  # Mailgun's own bot / privacy-proxy verdict on opens and clicks
        extra["provider_bot"] = str(client["bot"])
    if isinstance(variables.get("subscriber_id"), str):
        extra["subscriber_id"] = variables["subscriber_id"]
    if data.get("reason"):
        extra["reason"] = str(data["reason"])
    return extra
