"""The one event schema: every stage publishes these to `analytics-events`, and the warehouse
stores them as rows (DuckDB locally, BigQuery on GCP; columns in terraform/schemas/events.json).

`event_id` is deterministic wherever the cause is (e.g. "send:<campaign>:<subscriber>"), so a
retried stage republishes the same id and every read deduplicates on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.domain.errors import InvalidInput
from shared.domain.messages import plain_json

# Subscriber lifecycle
SIGNUP = "signup"
CONFIRM = "confirm"
PREFERENCES_CHANGED = "preferences_changed"
UNSUBSCRIBE = "unsubscribe"
ERASED = "erased"
# A subscriber document changed: carries its mirror row (shared/domain/subscriber_mirror.py),
# which the warehouse stores in `subscribers_raw`, not among the events.
SUBSCRIBER_CHANGED = "subscriber_changed"
# Sending
SEND = "send"
SEND_FAILED = "send_failed"
SUPPRESSED = "suppressed"  # skipped at send time because the address is suppressed
# Provider feedback
DELIVERED = "delivered"
DEFERRED = "deferred"
BOUNCE = "bounce"
COMPLAINT = "complaint"
DROPPED = "dropped"
# Engagement
OPEN = "open"
CLICK = "click"
# Behaviour reported by the customer's systems (POST /events)
CUSTOM = "custom"

EVENT_TYPES = frozenset(
    {
        SIGNUP, CONFIRM, PREFERENCES_CHANGED, UNSUBSCRIBE, ERASED, SUBSCRIBER_CHANGED, SEND,
        SEND_FAILED, SUPPRESSED, DELIVERED, DEFERRED, BOUNCE, COMPLAINT, DROPPED, OPEN, CLICK,
        CUSTOM,
    }
)  # fmt: skip

COLUMNS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "occurred_at",
    "received_at",
    "subscriber_id",
    "campaign_id",
    "variant",
    "trigger_id",
    "provider",
    "mailbox_provider",
    "message_id",
    "link_url",
    "is_machine",
    "reason",
    "properties",
)


def utc_iso(ts: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds and a Z, the shape BigQuery and Pub/Sub use."""
    moment = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stable_id(*parts: object) -> str:
    """A deterministic id from its causes, so retries produce the same id."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class AnalyticsEvent:
    event_id: str
    event_type: str
    occurred_at: str
    subscriber_id: str | None = None
    campaign_id: str | None = None
    variant: str | None = None
    trigger_id: str | None = None
    provider: str | None = None
    mailbox_provider: str | None = None
    message_id: str | None = None
    link_url: str | None = None
    is_machine: bool | None = None
    reason: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    received_at: str | None = None

    def to_row(self, received_at: str | None = None) -> dict[str, Any]:
        """The warehouse row; `received_at` (default: now) unless the event has one."""
        # Field by field rather than dataclasses.asdict, whose deep copy is slow on hot paths.
        row = {name: getattr(self, name) for name in COLUMNS}
        row["properties"] = dict(self.properties)
        row["received_at"] = self.received_at or received_at or utc_iso()
        return row

    def wire_row(self, received_at: str) -> dict[str, Any]:
        """`to_row` for encoding at once: the properties not copied when they are a dict."""
        row = {name: getattr(self, name) for name in COLUMNS}
        if type(self.properties) is not dict:
            row["properties"] = dict(self.properties)
        row["received_at"] = self.received_at or received_at
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AnalyticsEvent:
        known: dict[str, Any] = {k: row.get(k) for k in COLUMNS}
        props = known.get("properties") or {}
        known["properties"] = json.loads(props) if isinstance(props, str) else dict(props)
        return cls(**known)


def encode_events(events: list[AnalyticsEvent]) -> bytes:
    """One message's events; those without `received_at` get one stamp, the time of now."""
    now = utc_iso()
    return encode_rows([e.wire_row(now) for e in events])


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    """One message of event rows as `to_row` makes them. By orjson (a fifth of json.dumps's
    time: an import publishes a mirror row per subscriber); what it cannot encode (an integer
    beyond 64 bits, a key that is not a string) by json. orjson writes a NaN or infinity, which
    JSON does not have (nor BigQuery's JSON), as null."""
    try:
        return orjson.dumps(rows)
    except orjson.JSONEncodeError:
        return json.dumps(rows, separators=(",", ":")).encode()


def decode_events(data: bytes) -> list[AnalyticsEvent]:
    """Events from a Pub/Sub message; InvalidInput when it is not a list of event rows."""
    try:
        rows = json.loads(plain_json(data, "analytics events"))
        rows = rows if isinstance(rows, list) else [rows]
        return [AnalyticsEvent.from_row(r) for r in rows]
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"analytics events: {exc}") from exc


MAILBOX_PROVIDERS = {
    "gmail.com": "gmail", "googlemail.com": "gmail",
    "outlook.com": "outlook", "hotmail.com": "outlook", "live.com": "outlook", "msn.com": "outlook",
    "yahoo.com": "yahoo", "ymail.com": "yahoo", "aol.com": "yahoo",
    "icloud.com": "icloud", "me.com": "icloud", "mac.com": "icloud",
}  # fmt: skip


def mailbox_provider(address: str) -> str:
    """gmail, outlook, yahoo, icloud or other, from the address's domain."""
    domain = address.rpartition("@")[2].lower()
    if domain in MAILBOX_PROVIDERS:
        return MAILBOX_PROVIDERS[domain]
    for suffix, name in (("yahoo.", "yahoo"), ("hotmail.", "outlook"), ("outlook.", "outlook")):
        if domain.startswith(suffix):
            return name
    return "other"
