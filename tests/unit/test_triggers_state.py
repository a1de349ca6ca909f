"""The durable state of the triggers on the real local document store (SQLite): the run state
machine (create-if-absent, cancel, claim with a lease, defer, finish) and the per-subscriber
activity (cancelling events out of order, frequency caps counted once per run), plus the
behaviour-events message encoding."""

from __future__ import annotations

import json

import pytest

from shared.adapters.local.sqlite_documents import SqliteDocuments
from shared.domain.behaviour import (
    MAX_MESSAGE_BYTES,
    BehaviourEvent,
    BehaviourMessage,
    messages_for,
)
from shared.domain.errors import InvalidInput
from shared.domain.triggers import FrequencyCap, Trigger
from shared.repositories.trigger_activity import TriggerActivity
from shared.repositories.trigger_runs import (
    CANCELLED,
    SENDING,
    SENT,
    WAITING,
    TriggerRun,
    TriggerRuns,
)

NOW = 1_800_000_000.0


@pytest.fixture
def store(tmp_path) -> SqliteDocuments:
    return SqliteDocuments(tmp_path / "docs.sqlite3")


def a_run(key: str = "k1", subscriber: str = "s1", event_at: float = NOW, wait: float = 3600):
    return TriggerRun(TriggerRun.id_for("cart", subscriber, key), "cart", subscriber,
                      "cart_abandoned", event_at, key, NOW, event_at + wait,
                      {"items": [1]})  # fmt: skip


def test_the_same_event_is_one_run(store) -> None:
    runs = TriggerRuns(store)
    assert runs.start(a_run()) is True
    assert runs.start(a_run()) is False
    assert a_run("k2").id != a_run().id and a_run(subscriber="s2").id != a_run().id
    stored = runs.get(a_run().id)
    assert stored is not None and stored.properties == {"items": [1]} and stored.state == WAITING


def test_claim_takes_a_due_run_once_and_a_lapsed_one_again(store) -> None:
    runs = TriggerRuns(store)
    run = a_run()
    runs.start(run)
    assert runs.claim(run.id, NOW + 3599, 300) is None, "not due yet"
    assert runs.ready(NOW + 3599, 10) == []
    assert runs.ready(NOW + 3600, 10) == [run.id]
    first = runs.claim(run.id, NOW + 3600, 300)
    assert first is not None and first.state == SENDING and first.attempts == 1
    assert runs.claim(run.id, NOW + 3601, 300) is None, "taken"
    assert runs.ready(NOW + 3601, 10) == []
    assert runs.ready(NOW + 3900, 10) == [run.id], "the lease lapsed"
    second = runs.claim(run.id, NOW + 3900, 300)
    assert second is not None and second.attempts == 2
    runs.finish(first, SENT, None, NOW + 3901)  # the first claim no longer holds the run
    assert runs.get(run.id).state == SENDING  # type: ignore[union-attr]
    runs.finish(second, SENT, None, NOW + 3901)
    done = runs.get(run.id)
    assert done is not None and (done.state, done.claim_owner, done.finished_at) == (
        SENT,
        "",
        NOW + 3901,
    )
    assert runs.claim(run.id, NOW + 99999, 300) is None, "final"


def test_defer_puts_the_run_back_to_wait(store) -> None:
    runs = TriggerRuns(store)
    runs.start(a_run())
    claimed = runs.claim(a_run().id, NOW + 3600, 300)
    assert claimed is not None
    runs.defer(claimed, NOW + 7200, "quiet_hours")
    back = runs.get(claimed.id)
    assert back is not None and (back.state, back.due_at, back.reason) == (
        WAITING,
        NOW + 7200,
        "quiet_hours",
    )
    assert runs.ready(NOW + 7199, 10) == [] and runs.ready(NOW + 7200, 10) == [claimed.id]


def test_cancel_only_waiting_runs_started_before_the_cancelling_event(store) -> None:
    runs = TriggerRuns(store)
    early, late = a_run("early", event_at=NOW), a_run("late", event_at=NOW + 600)
    runs.start(early)
    runs.start(late)
    assert {r.id for r in runs.waiting("s1", "cart")} == {early.id, late.id}
    assert runs.cancel(late.id, NOW + 300, "unless:purchase", NOW + 700) is None, "started after"
    cancelled = runs.cancel(early.id, NOW + 300, "unless:purchase", NOW + 700)
    assert cancelled is not None and (cancelled.state, cancelled.reason) == (
        CANCELLED,
        "unless:purchase",
    )
    assert runs.cancel(early.id, NOW + 300, "unless:purchase", NOW + 700) is None, "already"
    assert [r.id for r in runs.waiting("s1", "cart")] == [late.id]
    assert runs.counts() == {("cart", CANCELLED): 1, ("cart", WAITING): 1}


def test_a_subscribers_runs_are_exported_and_erased(store) -> None:
    runs, activity = TriggerRuns(store), TriggerActivity(store)
    runs.start(a_run("a"))
    runs.start(a_run("b"))
    runs.start(a_run("c", subscriber="s2"))
    activity.record_event("s1", "purchase", NOW, NOW - 10)
    assert len(runs.of_subscriber("s1")) == 2
    assert runs.erase_subscriber("s1") == 2
    activity.erase_subscriber("s1")
    assert runs.of_subscriber("s1") == [] and len(runs.of_subscriber("s2")) == 1
    assert not activity.happened("s1", ["purchase"], 0, NOW * 2)


def test_cancelling_events_are_remembered_in_their_window(store) -> None:
    activity = TriggerActivity(store)
    activity.record_event("s1", "purchase", NOW, NOW - 86400)
    activity.record_event("s1", "purchase", NOW, NOW - 86400)  # redelivered: one time
    assert activity.happened("s1", ["purchase"], NOW - 1, NOW + 1)
    assert activity.happened("s1", ["refund", "purchase"], NOW, NOW)
    assert not activity.happened("s1", ["purchase"], NOW + 1, NOW + 3600)
    assert not activity.happened("s1", ["refund"], 0, NOW * 2)
    assert not activity.happened("s2", ["purchase"], 0, NOW * 2)
    activity.record_event("s1", "purchase", NOW + 10, NOW + 5)  # prunes what is too old
    doc = store.get("trigger_activity", "s1")
    assert doc is not None and doc["events"] == {"purchase": [NOW + 10]}


def test_a_send_counts_once_against_the_caps(store) -> None:
    activity = TriggerActivity(store)
    cart = Trigger("cart", "c", "x", frequency_cap=FrequencyCap(1, 86400))
    assert activity.reserve_send("s1", "run-1", cart, None, NOW, NOW - 86400) is None
    assert activity.reserve_send("s1", "run-1", cart, None, NOW + 5, NOW - 86400) is None, (
        "same run"
    )
    assert activity.reserve_send("s1", "run-2", cart, None, NOW + 10, NOW - 86400) == "trigger_cap"
    assert activity.reserve_send("s2", "run-3", cart, None, NOW + 10, NOW - 86400) is None
    later = NOW + 86401
    assert activity.reserve_send("s1", "run-2", cart, None, later, later - 86400) is None
    assert set(store.get("trigger_activity", "s1")["sends"]) == {"run-2"}  # type: ignore[index]


def test_behaviour_messages_round_trip_and_split_when_large() -> None:
    small = [BehaviourEvent("s1", "purchase", NOW, "k1", {"total": 3})]
    [message] = messages_for(small)
    assert BehaviourMessage.decode(json.dumps(message).encode()).events == small
    big = [BehaviourEvent("s1", "x", NOW, f"k{i}", {"blob": "y" * 15_000}) for i in range(60)]
    messages = messages_for(big)
    assert len(messages) > 1
    assert all(len(json.dumps(m)) < MAX_MESSAGE_BYTES + 20_000 for m in messages)
    decoded = [e for m in messages for e in BehaviourMessage.decode(json.dumps(m).encode()).events]
    assert decoded == big
    assert BehaviourMessage.decode(b'{"kind": "sweep"}').kind == "sweep"
    for bad in (b'{"kind": "other"}', b'{"kind": "events", "events": [{"name": "x"}]}', b"[1]"):
        with pytest.raises(InvalidInput):
            BehaviourMessage.decode(bad)
