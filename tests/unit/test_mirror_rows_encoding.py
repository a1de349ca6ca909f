"""Mirror rows and analytics events as an import makes them, cheaply: a commit's rows share
one formatted time, event rows are made without an event object each, and orjson encodes
them; each is what the general path (change_row, change_event, encode_events) makes."""

from __future__ import annotations

import dataclasses
import json

from shared.domain.events import (
    AnalyticsEvent,
    decode_events,
    encode_events,
    encode_rows,
    stable_id,
)
from shared.domain.subscriber import Subscriber
from shared.domain.subscriber_mirror import (
    change_event,
    change_event_rows,
    change_row,
    change_rows,
    state_of,
    tombstone,
)

AT = 1767225600.123456
RECEIVED = "2026-01-01T00:00:01.000Z"


def _people() -> list[Subscriber]:
    return [
        Subscriber(f"s{i}", f"p{i}@example.com", first_name="Åse" if i % 2 else None,
                   lists=["b", "a"], attributes={"z": 1, "a": {"é": [1.5, None]}})
        for i in range(5)
    ]  # fmt: skip


def test_a_commits_rows_are_the_rows_change_row_makes() -> None:
    changes = [(p.id, state_of(p)) for p in _people()] + [("gone", tombstone())]
    assert change_rows(changes, AT) == [change_row(sid, state, AT) for sid, state in changes]
    assert change_rows(changes, AT)[0]["changed_at"] == "2026-01-01T00:00:00.123456Z"


def test_a_change_id_is_stable_and_follows_id_time_and_state() -> None:
    person = _people()[0]
    first = change_row(person.id, state_of(person), AT)["change_id"]
    assert change_row(person.id, state_of(person), AT)["change_id"] == first  # republished
    assert change_row("other", state_of(person), AT)["change_id"] != first
    assert change_row(person.id, state_of(person), AT + 1e-6)["change_id"] != first
    person.tags = ["vip"]
    assert change_row(person.id, state_of(person), AT)["change_id"] != first
    # Keys sorted, so a state built in another order has the same id.
    state = state_of(_people()[0])
    reordered = dict(reversed(list(state.items())))
    assert change_row(person.id, reordered, AT)["change_id"] == first
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert first == stable_id(person.id, repr(AT), canonical)


def test_event_rows_are_what_the_change_events_encode_to() -> None:
    rows = change_rows([(p.id, state_of(p)) for p in _people()], AT)
    events = [dataclasses.replace(change_event(r), received_at=RECEIVED) for r in rows]
    assert change_event_rows(rows, RECEIVED) == [e.to_row() for e in events]
    assert decode_events(encode_rows(change_event_rows(rows, RECEIVED))) == decode_events(
        encode_events(events)
    )


def test_orjson_encoding_decodes_to_what_json_encodes() -> None:
    properties = {"name": "Zoë", "n": [1, 2.5, None, True], "d": {"k": "v"}}
    event = AnalyticsEvent("e1", "custom", RECEIVED, subscriber_id="s1", properties=properties)
    row = event.to_row(RECEIVED)
    assert json.loads(encode_rows([row])) == json.loads(json.dumps([row]))
    assert json.loads(encode_events([event]))[0]["properties"] == dict(event.properties)
    big = dataclasses.replace(event, properties={"big": 2**70, 3: "not a string key"})
    assert decode_events(encode_events([big]))[0].properties == {
        "big": 2**70,
        "3": "not a string key",
    }
