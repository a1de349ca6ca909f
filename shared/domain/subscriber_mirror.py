"""The subscriber mirror: what the warehouse keeps of each subscriber so that a campaign's
audience is selected there by SQL (shared/services/audience_sql.py) instead of by reading every
subscriber document.

Every change to a subscriber document becomes one change row, published on the analytics topic
as a `subscriber_changed` event and appended by the warehouse function to `subscribers_raw`
(BigQuery: partitioned on `changed_at`, clustered by `subscriber_id`; DuckDB locally). The
table is append-only: the latest row of an id (by `changed_at`, then `change_id`) is the
subscriber's current state. An erasure appends a tombstone (`erased`, nothing personal) and the
warehouse blanks the person's earlier rows.

Only what a segment, the audience's eligibility or a render batch needs is mirrored: no consent
records, bounce counters or send outcomes, so the frequent writes that touch only those (the
feedback stage's soft-bounce counter) change nothing in the mirror and publish nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.domain.events import COLUMNS as EVENT_COLUMNS
from shared.domain.events import SUBSCRIBER_CHANGED, AnalyticsEvent, stable_id
from shared.domain.subscriber import Subscriber

TABLE = "subscribers_raw"
# Column -> BigQuery type (terraform/schemas/subscribers.json says the same; a test compares).
COLUMN_TYPES: Mapping[str, str] = {
    "change_id": "STRING",
    "subscriber_id": "STRING",
    "changed_at": "TIMESTAMP",
    "erased": "BOOL",
    "status": "STRING",
    "email": "STRING",
    "first_name": "STRING",
    "frequency": "STRING",
    "timezone": "STRING",
    "lists": "STRING[]",
    "tags": "STRING[]",
    "topics": "STRING[]",
    "attributes": "STRING",  # JSON text
    "created_at": "FLOAT64",  # epoch seconds, as on the subscriber
    "confirmed_at": "FLOAT64",
    "suppressed": "STRING",
    "tracking": "BOOL",
}
COLUMNS = tuple(COLUMN_TYPES)
_STATE = COLUMNS[3:]  # what a change row says about the subscriber (not its id or time)


def state_of(subscriber: Subscriber) -> dict[str, Any]:
    """The mirrored part of a subscriber (compared before and after a change: equal states
    publish nothing)."""
    return {
        "erased": False,
        "status": subscriber.status,
        "email": subscriber.email,
        "first_name": subscriber.first_name or "",
        "frequency": subscriber.frequency,
        "timezone": subscriber.timezone,
        "lists": sorted(subscriber.lists),
        "tags": sorted(subscriber.tags),
        "topics": sorted(subscriber.topics),
        "attributes": json.dumps(subscriber.attributes, sort_keys=True, separators=(",", ":")),
        "created_at": float(subscriber.created_at or 0.0),
        "confirmed_at": subscriber.confirmed_at,
        "suppressed": subscriber.suppressed or None,
        "tracking": bool(subscriber.tracking),
    }


def tombstone() -> dict[str, Any]:
    """The state of an erased subscriber: nothing personal, never in an audience."""
    return {
        "erased": True, "status": "erased", "email": "", "first_name": "", "frequency": "all",
        "timezone": None, "lists": [], "tags": [], "topics": [], "attributes": "{}",
        "created_at": 0.0, "confirmed_at": None, "suppressed": None, "tracking": False,
    }  # fmt: skip


def change_row(subscriber_id: str, state: Mapping[str, Any], changed_at: float) -> dict[str, Any]:
    """One row of `subscribers_raw`. Its id comes from the id, time and state, so a republished
    change is the same row (and BigQuery's insertId drops the copy)."""
    return _row(subscriber_id, state, utc_iso_micros(changed_at), repr(changed_at))


def change_rows(
    changes: Sequence[tuple[str, Mapping[str, Any]]], changed_at: float
) -> list[dict[str, Any]]:
    """The rows of changes made at one moment (a commit of an import: up to 500), each the
    row `change_row` makes; the moment's text is formatted once for all of them."""
    moment, stamp = utc_iso_micros(changed_at), repr(changed_at)
    return [_row(subscriber_id, state, moment, stamp) for subscriber_id, state in changes]


def _row(subscriber_id: str, state: Mapping[str, Any], moment: str, stamp: str) -> dict[str, Any]:
    body = {name: state[name] for name in _STATE}
    # The state's canonical JSON (sorted keys) by orjson: a tenth of json.dumps's time.
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    return {
        "change_id": stable_id(subscriber_id, stamp, canonical),
        "subscriber_id": subscriber_id,
        "changed_at": moment,
        **body,
    }


def utc_iso_micros(ts: float) -> str:
    """RFC 3339 with microseconds: two changes of one subscriber in one millisecond keep
    their order."""
    moment = datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")
    return moment.replace("+00:00", "Z")


def change_event(row: Mapping[str, Any]) -> AnalyticsEvent:
    """The analytics event that carries a change row to the warehouse function."""
    return AnalyticsEvent(
        event_id=str(row["change_id"]),
        event_type=SUBSCRIBER_CHANGED,
        occurred_at=str(row["changed_at"]),
        subscriber_id=str(row["subscriber_id"]),
        properties=dict(row),
    )


def change_event_rows(rows: Sequence[Mapping[str, Any]], received_at: str) -> list[dict[str, Any]]:
    """The warehouse rows of `change_event(row).to_row(received_at)` for each row, made
    without an event object each (an import publishes one per subscriber)."""
    return [
        {
            **_EVENT_ROW,
            "event_id": str(row["change_id"]),
            "occurred_at": str(row["changed_at"]),
            "received_at": received_at,
            "subscriber_id": str(row["subscriber_id"]),
            "properties": dict(row),
        }
        for row in rows
    ]


_EVENT_ROW: Mapping[str, Any] = {**dict.fromkeys(EVENT_COLUMNS), "event_type": SUBSCRIBER_CHANGED}


def row_of(event: AnalyticsEvent) -> dict[str, Any]:
    """The change row a `subscriber_changed` event carries (missing columns as NULL)."""
    return {name: event.properties.get(name) for name in COLUMNS}
