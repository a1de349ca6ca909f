"""The subscriber aggregate and its lifecycle rules (double opt-in, unsubscribe, suppression)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from shared.domain.errors import Conflict

PENDING = "pending"
CONFIRMED = "confirmed"
UNSUBSCRIBED = "unsubscribed"
STATUSES = (PENDING, CONFIRMED, UNSUBSCRIBED)

FREQUENCIES = ("all", "weekly", "monthly")


@dataclass
class ConsentRecord:
    """Proof of consent, kept with the subscriber (GDPR art. 7(1))."""

    action: str  # signup | confirm | preferences | unsubscribe
    at: float
    source: str
    ip: str = ""
    user_agent: str = ""
    form_version: str = ""
    text_hash: str = ""


@dataclass
class Subscriber:
    id: str
    email: str
    status: str = PENDING
    first_name: str = ""
    lists: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    frequency: str = "all"
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    confirmed_at: float | None = None
    unsubscribed_at: float | None = None
    suppressed: str | None = None  # reason, when the address must never be mailed
    tracking: bool = True
    timezone: str | None = None
    last_open_at: float | None = None
    last_click_at: float | None = None
    recent_outcomes: list[str] = field(default_factory=list)  # newest last: sent|soft|hard
    soft_bounces: list[list[Any]] = field(default_factory=list)  # [message key, when]: policy
    consent: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Subscriber:
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_doc(self) -> dict[str, Any]:
        """The document (a copy: changing it leaves the subscriber alone). Written out rather
        than `asdict`, which deep-copies field by field ten times slower (imports of millions)."""
        doc = {name: getattr(self, name) for name in _FIELD_NAMES}
        for name in ("lists", "tags", "topics", "recent_outcomes"):
            doc[name] = list(doc[name])
        doc["attributes"] = _copy_json(self.attributes)
        doc["consent"] = [dict(c) for c in self.consent]
        doc["soft_bounces"] = [list(b) for b in self.soft_bounces]
        return doc

    def new_doc(self) -> dict[str, Any]:
        """The document of a subscriber about to be created, sharing its lists and dicts (no
        copies: for a write that serializes it at once, as creating millions does)."""
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    @property
    def mailable(self) -> bool:
        """May receive marketing mail: confirmed and not suppressed."""
        return self.status == CONFIRMED and not self.suppressed

    def confirm(self, at: float, consent: ConsentRecord) -> None:
        if self.status == CONFIRMED:
            raise Conflict("already confirmed")
        self.status = CONFIRMED
        self.confirmed_at = at
        self.unsubscribed_at = None
        if self.suppressed == "unsubscribed":
            self.suppressed = None
        self.consent.append(asdict(consent))

    def unsubscribe(self, at: float, consent: ConsentRecord) -> bool:
        """True when this changed anything (a second click is harmless)."""
        if self.status == UNSUBSCRIBED:
            return False
        self.status = UNSUBSCRIBED
        self.unsubscribed_at = at
        self.consent.append(asdict(consent))
        return True


_FIELD_NAMES = tuple(f.name for f in fields(Subscriber))


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value
