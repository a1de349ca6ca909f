"""Behaviour events: what a subscriber did, as the customer's systems report it (POST /events)
or as Mailpipe itself records it (`subscriber.confirmed`), and the messages on the
`behaviour-events` topic that carry them to the triggers function.

Intake rules (each broken rule names the event's index and field):
- subscriber: {"email": ...} or {"id": ...};
- name: a lowercase slug (`cart_abandoned`, `order.paid`); names starting with `subscriber.` or
  `mailpipe.` are Mailpipe's own and cannot be posted;
- properties: a JSON object of at most MAX_PROPERTIES_BYTES;
- timestamp: RFC 3339 with an offset, at most MAX_FUTURE_S ahead of the server's clock
  (absent: now);
- idempotency_key: required, at most MAX_KEY_LENGTH characters; the same key for the same
  subscriber is the same event, however often it is posted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared.domain import strict_json
from shared.domain.addresses import normalize_address
from shared.domain.errors import InvalidInput
from shared.domain.events import stable_id
from shared.domain.messages import from_json, to_json

MAX_EVENTS_PER_REQUEST = 500
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_KEY_LENGTH = 200
MAX_FUTURE_S = 300.0
MAX_MESSAGE_BYTES = 400_000  # one Pub/Sub message; the 2nd-gen event limit is 512 KB

EVENT_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")
SUBSCRIBER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESERVED_PREFIXES = ("subscriber.", "mailpipe.")

SUBSCRIBER_CONFIRMED = "subscriber.confirmed"  # published by preference-sync
TRIGGER_RUN = "mailpipe.trigger_run"  # the warehouse record of a trigger run's outcome

EVENTS = "events"  # message kinds on behaviour-events
SWEEP = "sweep"


@dataclass(frozen=True)
class BehaviourEvent:
    """One validated event of one subscriber (`subscriber_id` is Mailpipe's id)."""

    subscriber_id: str
    name: str
    occurred_at: float
    idempotency_key: str
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        """The same key for the same subscriber is the same event (the warehouse row's id)."""
        return stable_id("behaviour", self.subscriber_id, self.idempotency_key)


@dataclass(frozen=True)
class RawEvent:
    """A posted event after validation, before its subscriber is resolved to an id."""

    email: str | None
    subscriber_id: str | None
    name: str
    occurred_at: float
    idempotency_key: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class Problem:
    index: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"events[{self.index}].{self.field}: {self.message}"


class InvalidEvents(InvalidInput):
    """One or more posted events break the rules; `problems` names each (index and field)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        shown = "; ".join(str(p) for p in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{len(problems)} problem(s): {shown}{more}", field=_first_field(problems))
        self.problems = list(problems)


def _first_field(problems: Sequence[Problem]) -> str | None:
    return f"events[{problems[0].index}].{problems[0].field}" if problems else None


# --- parsing a request body ----------------------------------------------------------------
def decode_body(data: bytes) -> Any:
    """The JSON of a request body; InvalidInput when it is not JSON (NaN and Infinity, which
    JSON does not have, included) or nests deeper than strict_json allows."""
    try:
        return strict_json.loads(data or b"null")
    except InvalidInput as exc:
        raise InvalidInput(str(exc), field="events") from exc


def event_list(body: Any) -> list[Any]:
    """The posted events: one object, or {"events": [...]} with 1..MAX_EVENTS_PER_REQUEST."""
    if not isinstance(body, dict):
        raise InvalidInput('body must be one event object or {"events": [...]}', field="events")
    if "events" not in body:
        return [body]
    events = body["events"]
    if not isinstance(events, list) or not events:
        raise InvalidInput("events must be a non-empty list of event objects", field="events")
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise InvalidInput(
            f"at most {MAX_EVENTS_PER_REQUEST} events per request, not {len(events)}",
            field="events",
        )
    return events


def parse_events(body: Any, now: float) -> list[RawEvent]:
    """Every event of the body, validated; InvalidEvents lists every problem found."""
    parsed: list[RawEvent] = []
    problems: list[Problem] = []
    for index, raw in enumerate(event_list(body)):
        found = list(_problems(raw, now))
        if found:
            problems += [Problem(index, f, m) for f, m in found]
        else:
            parsed.append(_raw_event(raw, now))
    if problems:
        raise InvalidEvents(problems)
    return parsed


_FIELDS = frozenset({"subscriber", "name", "properties", "timestamp", "idempotency_key"})


def _problems(raw: Any, now: float) -> Iterator[tuple[str, str]]:
    if not isinstance(raw, dict):
        yield "", "each event must be a JSON object"
        return
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        yield unknown[0], f"unknown field; an event has {', '.join(sorted(_FIELDS))}"
    yield from _subscriber_problems(raw.get("subscriber"))
    yield from _name_problems(raw.get("name"))
    yield from _properties_problems(raw.get("properties", {}))
    yield from _timestamp_problems(raw.get("timestamp"), now)
    yield from _key_problems(raw.get("idempotency_key"))


def _subscriber_problems(value: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(value, dict) or len(value) != 1 or not {"email", "id"} & set(value):
        yield "subscriber", 'must be {"email": "..."} or {"id": "..."}'
    elif "email" in value:
        try:
            normalize_address(value["email"])
        except InvalidInput as exc:
            yield "subscriber.email", str(exc)
    elif not isinstance(value["id"], str) or not SUBSCRIBER_ID.match(value["id"]):
        yield "subscriber.id", "must be a subscriber id (letters, digits, _ and -, at most 64)"


def _name_problems(value: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(value, str) or not EVENT_NAME.match(value):
        yield (
            "name",
            (
                "must be a lowercase name of letters, digits, _ . and - starting with a letter "
                "(at most 100), such as cart_abandoned"
            ),
        )
    elif value.startswith(RESERVED_PREFIXES):
        yield "name", f"names starting with {' or '.join(RESERVED_PREFIXES)} are Mailpipe's own"


def _properties_problems(value: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(value, dict):
        yield "properties", "must be a JSON object"
        return
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    except ValueError:
        yield "properties", "must not contain NaN or Infinity"
        return
    if size > MAX_PROPERTIES_BYTES:
        yield "properties", f"is {size} bytes as JSON; at most {MAX_PROPERTIES_BYTES}"


def _timestamp_problems(value: Any, now: float) -> Iterator[tuple[str, str]]:
    if value is None:
        return
    at = parse_timestamp(value)
    if at is None:
        yield "timestamp", "must be an RFC 3339 time with an offset, such as 2026-05-01T09:30:00Z"
    elif at < 0:
        yield "timestamp", "must be after 1970-01-01T00:00:00Z"
    elif at > now + MAX_FUTURE_S:
        yield "timestamp", f"is more than {int(MAX_FUTURE_S // 60)} minutes in the future"


def _key_problems(value: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(value, str) or not value.strip():
        yield "idempotency_key", "is required: a string that is the same when the event is resent"
    elif len(value) > MAX_KEY_LENGTH or not value.isprintable():
        yield "idempotency_key", f"must be printable and at most {MAX_KEY_LENGTH} characters"


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time with an offset, or None when it is not one."""
    if not isinstance(value, str) or len(value) < 20 or value[10] not in "Tt ":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def _raw_event(raw: dict[str, Any], now: float) -> RawEvent:
    subscriber = raw["subscriber"]
    at = parse_timestamp(raw["timestamp"]) if raw.get("timestamp") is not None else now
    email = subscriber.get("email")
    return RawEvent(
        email=normalize_address(email) if email is not None else None,
        subscriber_id=subscriber.get("id"),
        name=raw["name"],
        occurred_at=float(at if at is not None else now),
        idempotency_key=raw["idempotency_key"],
        properties=dict(raw.get("properties") or {}),
    )


# --- the behaviour-events topic --------------------------------------------------------------
def messages_for(events: Sequence[BehaviourEvent]) -> list[dict[str, Any]]:
    """Payloads {"kind": "events", "events": [...]} for the behaviour-events topic: one, unless
    the events exceed what one Pub/Sub push may carry; then as few as fit."""
    chunks = sized_chunks([asdict(e) for e in events], MAX_MESSAGE_BYTES)
    return [{"kind": EVENTS, "events": chunk} for chunk in chunks]


def sized_chunks(rows: Sequence[Any], max_bytes: int) -> list[list[Any]]:
    """`rows` in order, cut into lists whose JSON stays under about `max_bytes` each."""
    chunks: list[list[Any]] = []
    chunk: list[Any] = []
    size = 0
    for row in rows:
        row_size = len(to_json(row)) + 1
        if chunk and size + row_size > max_bytes:
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(row)
        size += row_size
    return [*chunks, chunk] if chunk else chunks


@dataclass(frozen=True)
class BehaviourMessage:
    """A message on behaviour-events: events to act on, or the scheduler's sweep."""

    kind: str
    events: list[BehaviourEvent] = field(default_factory=list)

    @classmethod
    def decode(cls, data: bytes) -> BehaviourMessage:
        raw = from_json(data, "behaviour message")
        kind = raw.get("kind")
        if kind == SWEEP:
            return cls(SWEEP)
        if kind != EVENTS or not isinstance(raw.get("events"), list):
            raise InvalidInput(f'behaviour message: kind must be "events" or "sweep", not {kind!r}')
        return cls(EVENTS, [_decoded(e) for e in raw["events"]])


def _decoded(row: Any) -> BehaviourEvent:
    try:
        event = BehaviourEvent(
            subscriber_id=str(row["subscriber_id"]),
            name=str(row["name"]),
            occurred_at=float(row["occurred_at"]),
            idempotency_key=str(row["idempotency_key"]),
            properties=dict(row.get("properties") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"behaviour message: bad event ({exc!r})") from exc
    if not math.isfinite(event.occurred_at):
        raise InvalidInput("behaviour message: occurred_at is not a finite time")
    return event


def lifecycle_event(
    subscriber_id: str, name: str, occurred_at: float, cause: str, properties: Mapping[str, Any]
) -> BehaviourEvent:
    """A Mailpipe-made event (e.g. subscriber.confirmed); `cause` (the causing event's id)
    makes its idempotency key, so a redelivered cause is the same event."""
    return BehaviourEvent(subscriber_id, name, occurred_at, f"{name}:{cause}", dict(properties))
