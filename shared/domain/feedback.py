"""Provider feedback normalized into one shape, whatever the ESP (SendGrid, Mailgun, SES, SMTP)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.domain.errors import InvalidInput

DELIVERED = "delivered"
DEFERRED = "deferred"
BOUNCE = "bounce"
COMPLAINT = "complaint"
OPEN = "open"
CLICK = "click"
UNSUBSCRIBE = "unsubscribe"
DROPPED = "dropped"
KINDS = frozenset({DELIVERED, DEFERRED, BOUNCE, COMPLAINT, OPEN, CLICK, UNSUBSCRIBE, DROPPED})
HARD, SOFT = "hard", "soft"


@dataclass(frozen=True)
class FeedbackEvent:
    provider: str
    provider_event_id: str
    kind: str
    email: str
    occurred_at: float
    message_id: str | None = None
    campaign_id: str | None = None
    bounce_type: str | None = None  # hard | soft, for bounces
    smtp_code: str | None = None
    enhanced_code: str | None = None
    url: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    detail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """InvalidInput for anything the feedback stage could not use: webhooks build events
        through here before publishing, so what reaches the bus is usable by construction."""
        if self.kind not in KINDS:
            raise InvalidInput(f"unknown feedback kind {self.kind!r}", field="kind")
        if self.kind == BOUNCE and self.bounce_type not in (HARD, SOFT):
            raise InvalidInput("a bounce needs bounce_type hard or soft", field="bounce_type")
        for name in _REQUIRED_TEXT:
            if not _is_text(getattr(self, name)) or not getattr(self, name):
                raise InvalidInput(f"feedback event: {name} must be non-empty text", field=name)
        for name in _OPTIONAL_TEXT:
            value = getattr(self, name)
            if value is not None and not _is_text(value):
                raise InvalidInput(f"feedback event: {name} must be text", field=name)
        if not is_usable_instant(self.occurred_at):
            raise InvalidInput(
                f"feedback event: occurred_at must be a time between 1970 and 9999, "
                f"not {self.occurred_at!r}",
                field="occurred_at",
            )
        if not isinstance(self.extra, dict):
            raise InvalidInput("feedback event: extra must be an object", field="extra")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeedbackEvent:
        try:
            return cls(**raw)
        except TypeError as exc:
            raise InvalidInput(f"feedback event: {exc}") from exc


_REQUIRED_TEXT = ("provider", "provider_event_id", "email")
_OPTIONAL_TEXT = ("message_id", "campaign_id", "bounce_type", "smtp_code", "enhanced_code", "url",
                  "user_agent", "ip", "detail")  # fmt: skip
LATEST_INSTANT = 253402300799.0  # 9999-12-31T23:59:59Z, the last second a timestamp can name


def is_usable_instant(value: object) -> bool:
    """A unix time the pipeline can store and format: a finite number from 1970 to 9999
    (NaN, infinities and 1e300 are not)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0.0 <= value <= LATEST_INSTANT
    )


def _is_text(value: object) -> bool:
    """Text that can be encoded (a lone surrogate cannot, and would fail every hash of it)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


# --- bounce classification ---------------------------------------------------------------------
# A provider's own verdict (SendGrid bounce/blocked, Mailgun severity, SES bounceType) wins: it
# knows the remote server's history. The status codes decide when the provider says nothing:
# RFC 3463 enhanced status codes first (5.x.x permanent, 4.x.x persistent-transient), then the
# RFC 5321 reply code (5yz permanent, 4yz transient). With neither, a bounce is soft, because a
# wrongly hard bounce suppresses an address for good while a wrongly soft one costs one retry.

_ENHANCED_CODE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?![\d.])")


def bounce_type(
    provider_verdict: str | None, smtp_code: str | None = None, enhanced_code: str | None = None
) -> str:
    """hard or soft: the provider's verdict if it gave one, else the codes, else soft."""
    if provider_verdict in (HARD, SOFT):
        return provider_verdict
    for code in (enhanced_code, smtp_code):
        if code and code[0] == "5":
            return HARD
        if code and code[0] == "4":
            return SOFT
    return SOFT


def codes_in(text: str | None) -> tuple[str | None, str | None]:
    """(SMTP reply code, enhanced status code) found in a diagnostic such as
    "smtp; 550 5.1.1 <jane@example.com>... User unknown"; None for each one absent."""
    if not text:
        return None, None
    enhanced = _ENHANCED_CODE.search(text)
    reply = _REPLY_CODE.search(text)
    return (reply.group(1) if reply else None, ".".join(enhanced.groups()) if enhanced else None)


def clean_code(value: object) -> str | None:
    """An SMTP or enhanced code as text ("550", "5.1.1"), or None for empty values."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


# --- soft-bounce policy ------------------------------------------------------------------------

DAY_S = 86400.0


@dataclass(frozen=True)
class SoftBouncePolicy:
    """Suppress after `threshold` distinct soft-bounced messages within `window_days`.

    Counted on the subscriber document (`soft_bounces`: [message key, when] of the recent
    ones), which feedback changes only when a soft bounce arrives: no warehouse query per
    bounce and no write per send. A message counts once however often it soft-bounced (Mailgun
    reports every temporary failure of one message), so retries and redeliveries cannot
    inflate the count; a bounce that names no message counts by its provider event id.
    """

    threshold: int = 3
    window_days: float = 30.0

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.window_days <= 0:
            raise InvalidInput("soft bounce policy needs threshold >= 1 and a positive window")

    def record(
        self, recent: list[list[Any]], message_key: str, at: float, now: float
    ) -> list[list[Any]]:
        """`recent` with this bounce added (once per message) and what left the window gone;
        at most `threshold` entries are kept, the newest."""
        since = now - self.window_days * DAY_S
        kept = [[key, when] for key, when in recent if when >= since]
        if at >= since and all(key != message_key for key, _ in kept):
            kept.append([message_key, at])
        kept.sort(key=lambda entry: entry[1])
        return kept[-self.threshold :]

    def suppresses(self, recent: list[list[Any]]) -> bool:
        return len({key for key, _ in recent}) >= self.threshold
