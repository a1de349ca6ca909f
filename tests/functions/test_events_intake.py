"""POST /events through its functions-framework app: the API key, validation that names each
bad event's index and field, the same answer for known and unknown subscribers, and what is
published (behaviour-events for the triggers, analytics-events for the warehouse)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from trigger_support import (
    API_KEY,
    FakeClock,
    Pipeline,
    add_confirmed,
    event,
    post_events,
    rfc3339,
)

from shared import topology
from shared.domain.behaviour import BehaviourMessage

ANN = "ann@example.com"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def container(make_container, clock):
    return make_container(overrides={"clock": clock}, events_api_key=API_KEY)


@pytest.fixture
def client(container, function_client) -> Any:
    return function_client("events")


def pulled(container, topic: str) -> list[bytes]:
    sub = topology.subscriptions_of(topic)[0].name
    return [d.data for d in container.bus.pull(sub, 100, lease_s=0.001)]


def warehouse_rows(container) -> list[dict]:
    rows = [
        row for data in pulled(container, topology.ANALYTICS_EVENTS) for row in json.loads(data)
    ]
    return [row for row in rows if row["event_type"] != "subscriber_changed"]  # mirror rows


# --- the key -----------------------------------------------------------------------------------
def test_without_a_configured_key_intake_is_disabled(make_container, function_client) -> None:
    make_container()
    response = post_events(function_client("events"), event(ANN, "x", 0, "k"), key="")
    assert response.status_code == 503
    assert response.get_json()["error"] == "event intake disabled: set MAILPIPE_EVENTS_API_KEY"


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", f"Basic {API_KEY}", API_KEY])
def test_a_missing_or_wrong_key_is_401_and_publishes_nothing(container, client, header) -> None:
    add_confirmed(container, ANN)
    headers = {"Authorization": header} if header else {}
    body = json.dumps(event(ANN, "cart_abandoned", container.clock(), "k"))
    response = client.post("/", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401 and "API key" in response.get_json()["error"]
    assert pulled(container, topology.BEHAVIOUR_EVENTS) == []


# --- what is accepted and published ---------------------------------------------------------
def test_one_event_is_accepted_published_and_warehoused(container, client, clock) -> None:
    ann = add_confirmed(container, ANN)
    at = clock() - 30
    response = post_events(client, event(ANN, "cart_abandoned", at, "cart-7", items=[{"n": 1}]))
    assert response.status_code == 202
    assert response.get_json() == {"status": "accepted", "accepted": 1}
    [raw] = pulled(container, topology.BEHAVIOUR_EVENTS)
    [published] = BehaviourMessage.decode(raw).events
    assert (published.subscriber_id, published.name) == (ann.id, "cart_abandoned")
    assert published.occurred_at == at
    assert (published.idempotency_key, published.properties) == ("cart-7", {"items": [{"n": 1}]})
    [row] = warehouse_rows(container)
    assert row["event_type"] == "custom" and row["subscriber_id"] == ann.id
    assert row["event_id"] == published.event_id and row["reason"] is None
    assert row["properties"]["name"] == "cart_abandoned"
    assert row["occurred_at"] == rfc3339(at).replace("Z", ".000Z")


def test_a_batch_is_one_message_and_subscribers_may_be_named_by_id(container, client, clock):
    ann = add_confirmed(container, ANN)
    body = {"events": [
        event(ANN, "product_viewed", clock(), "v1", sku="A1"),
        {"subscriber": {"id": ann.id}, "name": "purchase", "idempotency_key": "o1"},  # now
    ]}  # fmt: skip
    assert post_events(client, body).get_json() == {"status": "accepted", "accepted": 2}
    [raw] = pulled(container, topology.BEHAVIOUR_EVENTS)
    events = BehaviourMessage.decode(raw).events
    assert [e.name for e in events] == ["product_viewed", "purchase"]
    assert {e.subscriber_id for e in events} == {ann.id}
    assert events[1].occurred_at == clock() and events[1].properties == {}


def test_an_unknown_subscriber_gets_the_same_answer_but_starts_nothing(container, client, clock):
    add_confirmed(container, ANN)
    known = post_events(client, event(ANN, "cart_abandoned", clock(), "k1"))
    unknown = post_events(client, event("nobody@example.com", "cart_abandoned", clock(), "k2"))
    assert (known.status_code, known.get_json()) == (unknown.status_code, unknown.get_json())
    assert len(pulled(container, topology.BEHAVIOUR_EVENTS)) == 1
    reasons = sorted(str(r["reason"]) for r in warehouse_rows(container))
    assert reasons == ["None", "unknown_subscriber"]


def test_the_same_key_is_the_same_warehouse_row(container, client, clock) -> None:
    add_confirmed(container, ANN)
    body = event(ANN, "purchase", clock(), "order-1", total=10)
    for posted in (body, body, event(ANN, "purchase", clock(), "order-2", total=10)):
        assert post_events(client, posted).status_code == 202
    Pipeline(container, ["warehouse-on-analytics-events"]).drain()
    rows = container.warehouse.query(
        "SELECT properties->>'$.idempotency_key' AS k FROM events WHERE event_type = 'custom'"
    )
    assert sorted(r["k"] for r in rows) == ["order-1", "order-2"]


# --- what is refused --------------------------------------------------------------------------
BAD_EVENTS = [
    ({"name": "x", "idempotency_key": "k"}, "subscriber"),
    ({"subscriber": {"email": "not an address"}, "name": "x", "idempotency_key": "k"},
     "subscriber.email"),
    ({"subscriber": {"id": "../etc"}, "name": "x", "idempotency_key": "k"}, "subscriber.id"),
    ({"subscriber": {"email": ANN}, "name": "Cart Abandoned", "idempotency_key": "k"}, "name"),
    ({"subscriber": {"email": ANN}, "name": "subscriber.confirmed", "idempotency_key": "k"},
     "name"),
    ({"subscriber": {"email": ANN}, "name": "x"}, "idempotency_key"),
    ({"subscriber": {"email": ANN}, "name": "x", "idempotency_key": "k" * 201}, "idempotency_key"),
    ({"subscriber": {"email": ANN}, "name": "x", "idempotency_key": "k", "properties": [1]},
     "properties"),
    ({"subscriber": {"email": ANN}, "name": "x", "idempotency_key": "k",
      "properties": {"blob": "x" * 17_000}}, "properties"),
    ({"subscriber": {"email": ANN}, "name": "x", "idempotency_key": "k",
      "timestamp": "2026-05-04 10:00"}, "timestamp"),
    ({"subscriber": {"email": ANN}, "name": "x", "idempotency_key": "k",
      "timestamp": "2026-05-04T10:06:00Z"}, "timestamp"),  # six minutes ahead of the clock
    ({"subscriber": {"email": ANN}, "name": "x", "idempotency_key": "k", "colour": "red"},
     "colour"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "field"), BAD_EVENTS)
def test_a_bad_event_is_400_naming_its_index_and_field(container, client, bad, field) -> None:
    good = event(ANN, "purchase", container.clock(), "fine")
    response = post_events(client, {"events": [good, bad]})
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == f"events[1].{field}", body
    assert body["problems"][0]["index"] == 1 and f"events[1].{field}" in body["error"]
    assert pulled(container, topology.BEHAVIOUR_EVENTS) == [], "nothing of the request is kept"
    assert pulled(container, topology.ANALYTICS_EVENTS) == []


def test_every_problem_of_a_batch_is_listed(container, client) -> None:
    fine = {"subscriber": {"email": ANN}, "name": "ok", "idempotency_key": "k"}
    body = {"events": [{"name": "x"}, fine, "not an object"]}
    problems = post_events(client, body).get_json()["problems"]
    assert {(p["index"], p["field"]) for p in problems} == {
        (0, "subscriber"), (0, "idempotency_key"), (2, "")}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"subscriber": {"email": "a@b.example"}, "name": "x", "idempotency_key": "k",'
         b' "properties": {"v": NaN}}', 400, "NaN"),
        (b"[]", 400, "one event object"),
        (b'{"events": []}', 400, "non-empty list"),
        (json.dumps({"events": [{"name": "x"}] * 501}).encode(), 400, "at most 500"),
    ],
)  # fmt: skip
def test_bodies_that_are_not_events_are_refused_clearly(client, body, status, says) -> None:
    response = client.post("/", data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
    assert response.status_code == status and says in response.get_json()["error"]


def test_size_method_and_content_type_are_checked(client) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    big = b'{"events": [' + b'"x",' * 300_000 + b'"x"]}'
    too_big = client.post("/", data=big, content_type="application/json", headers=auth)
    assert too_big.status_code == 413
    assert client.get("/", headers=auth).status_code == 405
    form = client.post("/", data={"name": "x"}, headers=auth)
    assert form.status_code == 415 and "application/json" in form.get_json()["error"]
