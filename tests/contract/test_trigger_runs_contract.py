"""The trigger run store's queries and state changes on both document stores (SQLite and the
Firestore emulator through the official client): create-if-absent, the due query (an equality
and a range filter, which Firestore orders by the range field), the three-equality `waiting`
query, claim, cancel and finish. (The emulator does not isolate transactions, so concurrent
claims are proved on SQLite in tests/reliability/test_trigger_delays.py.)"""

from __future__ import annotations

from typing import Any

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


def run(key: str, subscriber: str, due_in: float) -> TriggerRun:
    run_id = TriggerRun.id_for("cart", subscriber, key)
    items = {"items": [{"n": 1}]}
    return TriggerRun(
        run_id, "cart", subscriber, "cart_abandoned", NOW, key, NOW, NOW + due_in, items
    )


def test_the_run_lifecycle(documents: Any) -> None:
    runs = TriggerRuns(documents)
    soon, later, other = run("a", "s1", 60), run("b", "s1", 7200), run("c", "s2", 30)
    for r in (soon, later, other):
        assert runs.start(r)
    assert not runs.start(soon)
    assert sorted(runs.ready(NOW + 100, 10)) == sorted([soon.id, other.id])
    assert {r.id for r in runs.waiting("s1", "cart")} == {soon.id, later.id}
    claimed = runs.claim(soon.id, NOW + 100, 300)
    assert claimed is not None and claimed.state == SENDING
    assert runs.claim(soon.id, NOW + 101, 300) is None
    assert sorted(runs.ready(NOW + 100, 10)) == [other.id]
    assert runs.ready(NOW + 401, 10) == [other.id, soon.id], "due first, then lapsed"
    runs.finish(claimed, SENT, None, NOW + 102)
    cancelled = runs.cancel(later.id, NOW + 50, "unless:purchase", NOW + 103)
    assert cancelled is not None and cancelled.state == CANCELLED
    assert [r.id for r in runs.waiting("s1", "cart")] == []
    assert runs.get(soon.id).state == SENT  # type: ignore[union-attr]
    assert runs.get(other.id).state == WAITING  # type: ignore[union-attr]
    assert runs.get(other.id).properties == {"items": [{"n": 1}]}  # type: ignore[union-attr]


def test_the_activity_document(documents: Any) -> None:
    activity = TriggerActivity(documents)
    activity.record_event("s1", "purchase", NOW, NOW - 100)
    assert activity.happened("s1", ["purchase"], NOW - 1, NOW + 1)
    assert not activity.happened("s1", ["purchase"], NOW + 1, NOW + 2)
