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


@dataclass(frozen=True)
class HistoryRow:
    """One of a subscriber's recent `send` or soft `bounce` events, newest first."""

    event_type: str  # "send" | "bounce"
    message_key: str  # the Message-ID, or the event id when the provider gave none
    occurred_at: float
    message_known: bool = True  # False: a bounce that named no Message-ID


@dataclass(frozen=True)
class SoftBouncePolicy:
    """Suppress after `threshold` soft-bounced messages among the last `window` sends.

    A message counts once however often it soft-bounced (Mailgun reports every temporary
    failure of one message), so retries and redeliveries cannot inflate the count. A bounce
    that names its message counts when that message is one of the last `window` sends; one that
    does not (no correlation data) counts when it happened after the oldest of those sends.
    The bounce being processed always counts unless its message is known to be older than the
    window: the warehouse is eventually consistent and may not hold it (or its send) yet.
    """

    threshold: int = 3
    window: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= self.window:
            raise InvalidInput("soft bounce policy needs 1 <= threshold <= window")

    def bounced_messages(self, history: list[HistoryRow], current: HistoryRow) -> int:
        """How many distinct messages in the window soft-bounced, `current` included."""
        known_sends = [r.message_key for r in history if r.event_type == "send"]
        recent = list(dict.fromkeys(known_sends))[: self.window]
        if current.message_known and current.message_key not in known_sends:
            recent = [current.message_key, *recent][: self.window]  # its send is not stored yet
        starts_at = min(
            (r.occurred_at for r in history if r.event_type == "send" and r.message_key in recent),
            default=float("-inf"),
        )
        if len(recent) < self.window:
            starts_at = float("-inf")  # fewer sends than the window: every bounce is in it

        def in_window(row: HistoryRow) -> bool:
            if row.message_known and row.message_key in known_sends:
                return row.message_key in recent
            return row.occurred_at >= starts_at

        bounces = [r for r in history if r.event_type == "bounce"] + [current]
        return len({r.message_key for r in bounces if in_window(r)})

    def suppresses(self, history: list[HistoryRow], current: HistoryRow) -> bool:
        return self.bounced_messages(history, current) >= self.threshold
