"""sql/dashboards/trigger_performance.sql (BigQuery dialect, run on DuckDB through sqlglot)
gives exactly the figures of an independent Python computation over the same rows, and the
dashboard page shows them.

Definitions the reference states in plain code: rows deduplicated by event_id (first received
wins); a trigger's mails are its `send` events; a mail's goal is the one in the run record
(custom `mailpipe.trigger_run` with the same message_id); a conversion is a mail followed, from
the same subscriber, by a customer `custom` event named like the goal, strictly after the mail
and at most goal_within_s later; clicks by machines do not count.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.local.duckdb_warehouse import DuckDbWarehouse
from shared.analytics.sql_catalog import SqlCatalog
from shared.analytics.triggers_report import TriggerPerformance, page_context, trigger_performance
from shared.dashboard import pages
from shared.domain.behaviour import TRIGGER_RUN
from shared.domain.events import COLUMNS
from shared.domain.trigger_definitions import load_yaml

# Weeks ago, inside the 90 days the dashboard queries read (sql/views/events_recent.sql).
START = (datetime.now(UTC) - timedelta(days=40)).replace(hour=8, minute=0, second=0, microsecond=0)
CATALOG = SqlCatalog("duckdb")
GOALS = {"cart": ("purchase", 3 * 86400), "welcome": ("purchase", 7 * 86400)}
Row = dict[str, Any]


def fixture_rows(seed: int = 7) -> list[Row]:
    rng = random.Random(seed)
    rows: list[Row] = []

    def add(kind: str, at: datetime, **fields: Any) -> None:
        row = {c: None for c in COLUMNS} | {"properties": {}}
        row |= {"event_id": f"e{len(rows):05d}", "event_type": kind, "occurred_at": at,
                "received_at": at + timedelta(seconds=1)} | fields  # fmt: skip
        rows.append(row)

    def run(trigger: str, person: str, at: datetime, outcome: str, message: str | None) -> None:
        goal = GOALS[trigger] if outcome == "sent" else (None, None)
        add("custom", at, subscriber_id=person, trigger_id=trigger, reason=outcome,
            message_id=message, properties={"name": TRIGGER_RUN, "goal": goal[0],
                                            "goal_within_s": goal[1]})  # fmt: skip

    for n in range(60):
        person, trigger = f"s{n:03d}", rng.choice(["cart", "welcome"])
        at = START + timedelta(hours=n * 5)
        outcome = rng.choice(["sent", "sent", "sent", "cancelled", "capped", "skipped", "failed"])
        message = f"m{n}@x" if outcome == "sent" else None
        run(trigger, person, at, outcome, message)
        if message:
            add("send", at, subscriber_id=person, trigger_id=trigger, message_id=message)
            for _ in range(rng.choice([0, 1, 2])):
                add("click", at + timedelta(minutes=rng.randint(1, 600)), subscriber_id=person,
                    message_id=message, is_machine=rng.choice([True, False, None]))  # fmt: skip
        for hours in rng.sample([-2, 0, 1, 30, 71, 72, 73, 100, 167, 168, 169], 3):
            name = rng.choice(["purchase", "purchase", "browse"])
            add("custom", at + timedelta(hours=hours), subscriber_id=person,
                properties={"name": name, "properties": {}})  # fmt: skip
    # A mail of a trigger since removed, without a run record (no goal), and a goal event that
    # belongs to nobody's mail.
    add("send", START, subscriber_id="s900", trigger_id="old", message_id="old@x")
    add("custom", START + timedelta(hours=1), subscriber_id="s900", properties={"name": "purchase"})
    add("send", START, subscriber_id="s901", campaign_id="c1", message_id="campaign@x")
    for row in rng.sample(rows, 25):  # redeliveries, received later
        rows.append(row | {"received_at": row["received_at"] + timedelta(minutes=3)})
    return rows


def deduped(rows: list[Row]) -> list[Row]:
    first: dict[str, Row] = {}
    for row in sorted(rows, key=lambda r: r["received_at"]):
        first.setdefault(row["event_id"], row)
    return list(first.values())


def reference(rows: list[Row]) -> list[Row]:
    rows = deduped(rows)
    records = [r for r in rows if r["event_type"] == "custom" and r["trigger_id"]
               and r["properties"].get("name") == TRIGGER_RUN]  # fmt: skip
    goal_of = {r["message_id"]: r["properties"] for r in records if r["message_id"]}
    sends = [r for r in rows if r["event_type"] == "send" and r["trigger_id"]]
    behaviour = [r for r in rows if r["event_type"] == "custom" and not r["trigger_id"]]
    clicks = [r for r in rows if r["event_type"] == "click" and r["is_machine"] is not True]

    def converted(send: Row) -> bool:
        goal = goal_of.get(send["message_id"], {})
        if not goal.get("goal"):
            return False
        window = timedelta(seconds=goal["goal_within_s"])
        return any(e["subscriber_id"] == send["subscriber_id"]
                   and e["properties"].get("name") == goal["goal"]
                   and send["occurred_at"] < e["occurred_at"] <= send["occurred_at"] + window
                   for e in behaviour)  # fmt: skip

    out = []
    for trigger in sorted({r["trigger_id"] for r in records + sends}):
        mine = [s for s in sends if s["trigger_id"] == trigger]
        messages = {s["message_id"] for s in mine}
        their_clicks = [c for c in clicks if c["message_id"] in messages]
        outcomes = [r["reason"] for r in records if r["trigger_id"] == trigger]
        sent, converts = len(mine), sum(1 for s in mine if converted(s))
        unique = len({c["subscriber_id"] for c in their_clicks})
        out.append({
            "trigger_id": trigger, "runs": len(outcomes), "sent": sent,
            **{k: outcomes.count(k) for k in ("cancelled", "capped", "skipped", "failed")},
            "clicks": len(their_clicks), "unique_clicks": unique, "conversions": converts,
            "click_rate": unique / sent if sent else None,
            "conversion_rate": converts / sent if sent else None,
        })  # fmt: skip
    return out


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return fixture_rows()


@pytest.fixture(scope="module")
def warehouse(rows: list[Row], tmp_path_factory: pytest.TempPathFactory) -> DuckDbWarehouse:
    w = DuckDbWarehouse(Path(tmp_path_factory.mktemp("triggers")))
    wire = [r | {k: r[k].isoformat() for k in ("occurred_at", "received_at")} for r in rows]
    for start in range(0, len(wire), 83):
        w.append(wire[start : start + 83])
    return w


def test_duckdb_gives_exactly_the_reference_figures(rows, warehouse) -> None:
    expected = reference(rows)
    got = [vars(p) for p in trigger_performance(warehouse, CATALOG)]
    assert [r["trigger_id"] for r in expected] == ["cart", "old", "welcome"]
    assert got == expected


def test_the_fixture_exercises_the_edges(rows) -> None:
    figures = {r["trigger_id"]: r for r in reference(rows)}
    assert all(0 < figures[t]["conversions"] < figures[t]["sent"] for t in ("cart", "welcome"))
    assert figures["old"]["conversions"] == 0, "no run record: no goal"
    for trigger in ("cart", "welcome"):
        assert all(figures[trigger][k] for k in ("cancelled", "capped", "clicks"))


def test_one_trigger_alone(rows, warehouse) -> None:
    [cart] = trigger_performance(warehouse, CATALOG, "cart")
    assert vars(cart) == next(r for r in reference(rows) if r["trigger_id"] == "cart")
    assert trigger_performance(warehouse, CATALOG, "nope") == []


DEFINITIONS = load_yaml("""
triggers:
  - {id: welcome, event: subscriber.confirmed, template: welcome, description: Say hello.,
     goal: {event: purchase, within: 7d}}
  - {id: quiet_one, event: x, template: welcome}
  - {id: cart, event: cart_abandoned, template: welcome, goal: {event: purchase, within: 36h}}
""", None, "test")  # fmt: skip


def test_the_dashboard_page_lists_declared_then_removed_triggers(warehouse) -> None:
    context = page_context(warehouse, CATALOG, DEFINITIONS)
    order = [(r.performance.trigger_id, r.definition is not None) for r in context["rows"]]
    assert order == [("welcome", True), ("quiet_one", True), ("cart", True), ("old", False)]
    assert context["rows"][1].performance == TriggerPerformance("quiet_one")
    assert [r.goal for r in context["rows"]] == ["purchase within 7 days", "—",
                                                 "purchase within 36 hours", "—"]  # fmt: skip
    figures = {r.performance.trigger_id: r.performance for r in context["rows"]}
    assert context["totals"]["sent"] == sum(p.sent for p in figures.values())
    html = pages.render("triggers.html", page="triggers", **context)
    assert 'data-trigger="old"' in html and "removed" in html and "Say hello." in html
    cart = figures["cart"]
    assert f'<td class="num" data-figure="conversions">{cart.conversions}</td>' in html


def test_an_empty_warehouse_shows_the_declared_triggers(tmp_path) -> None:
    context = page_context(DuckDbWarehouse(tmp_path), CATALOG, DEFINITIONS)
    assert [r.performance.sent for r in context["rows"]] == [0, 0, 0]
    html = pages.render("triggers.html", page="triggers", **context)
    assert html.count("data-trigger=") == 3
