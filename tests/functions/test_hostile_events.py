"""POST /events at the edges of what it accepts (issue 16): what it takes is usable by the
triggers and warehouse stages (nothing dead-letters), and what they could not use is refused
with a 400 before anything is published."""

from __future__ import annotations

from typing import Any

import pytest
from trigger_support import API_KEY, FakeClock, Pipeline, add_confirmed, post_events, rfc3339

ANN = "ann@example.com"
STAGES = ("triggers-on-behaviour-events", "warehouse-on-analytics-events")


@pytest.fixture
def world(make_container, function_client) -> Any:
    clock = FakeClock()
    c = make_container(overrides={"clock": clock}, events_api_key=API_KEY)
    add_confirmed(c, ANN)
    Pipeline(c, STAGES).drain()  # Ann's subscriber mirror row: the bus starts empty
    return c, clock, function_client("events")


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"next": value}
    return value


def test_events_at_the_edges_of_the_rules_are_accepted_and_nothing_dead_letters(world) -> None:
    c, clock, events = world
    edge = [
        ("cart_abandoned", 0.0, {"items": [{"price": 1e300, "quantity": -1e300}]}),
        ("cart_abandoned", clock() + 299, {"items": nested(27)}),
        ("purchase", clock(), {"total": 10**300, "note": "ünïcødé ✉ " * 100}),
        ("product_viewed", clock(), {"items": [], "": None, "x" * 500: [None, True, 0.0]}),
    ]
    body = {"events": [
        {"subscriber": {"email": ANN}, "name": name, "timestamp": rfc3339(at),
         "idempotency_key": f"edge-{n}", "properties": properties}
        for n, (name, at, properties) in enumerate(edge)
    ]}  # fmt: skip
    response = post_events(events, body)
    assert response.status_code == 202, response.get_json()
    Pipeline(c, STAGES).drain()  # fails when anything was dead-lettered
    rows = c.warehouse.query("SELECT count(*) AS n FROM events WHERE event_type = 'custom'", {})
    assert rows[0]["n"] == len(edge)


@pytest.mark.parametrize(
    ("timestamp", "says"),
    [
        ("0001-01-01T00:00:00+14:00", "after 1970"),
        ("1969-12-31T23:59:59Z", "after 1970"),
        ("9999-12-31T23:59:59-14:00", "future"),
        ("nan", "RFC 3339"),
    ],
)
def test_times_the_stages_could_not_use_are_refused(world, timestamp, says) -> None:
    c, _, events = world
    body = {"subscriber": {"email": ANN}, "name": "purchase", "timestamp": timestamp,
            "idempotency_key": "k"}  # fmt: skip
    response = post_events(events, body)
    assert response.status_code == 400 and says in response.get_json()["error"]
    assert all(d["ready"] == 0 for d in c.bus.depths().values())


def test_properties_nested_beyond_the_limit_are_refused(world) -> None:
    c, clock, events = world
    body = {"subscriber": {"email": ANN}, "name": "purchase", "timestamp": rfc3339(clock()),
            "idempotency_key": "k", "properties": nested(40)}  # fmt: skip
    response = post_events(events, body)
    assert response.status_code == 400 and "at most 32 levels" in response.get_json()["error"]
    assert all(d["ready"] == 0 for d in c.bus.depths().values())
