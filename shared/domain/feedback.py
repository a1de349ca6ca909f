"""Provider feedback normalized into one shape, whatever the ESP (SendGrid, Mailgun, SES, SMTP)."""

from __future__ import annotations

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
        if self.kind not in KINDS:
            raise InvalidInput(f"unknown feedback kind {self.kind!r}", field="kind")
        if self.kind == BOUNCE and self.bounce_type not in (HARD, SOFT):
            raise InvalidInput("a bounce needs bounce_type hard or soft", field="bounce_type")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeedbackEvent:
        try:
            return cls(**raw)
        except TypeError as exc:
            raise InvalidInput(f"feedback event: {exc}") from exc
