"""Behavioural triggers end to end in one process: POST /events through its functions-framework
app, the real local bus delivering to the triggers, render, send and warehouse functions, the
shipped trigger definitions (templates/triggers/triggers.yaml), and a clock the test moves.

The cart-abandonment trigger as shipped: on cart_abandoned (items exist), wait 1h, unless
purchase, at most 1 per 24h, quiet hours 21:00-08:00 in the subscriber's time zone, goal
purchase within 3 days.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from dataclasses import asdict
from types import SimpleNamespace
from typing import Any

import pytest
from support import RecordingMailer
from trigger_support import (
    API_KEY,
    CART,
    HOUR,
    FakeClock,
    Pipeline,
    add_confirmed,
    event,
    post_events,
    template_root_with,
)

from shared import topology
from shared.analytics.sql_catalog import SqlCatalog
from shared.analytics.triggers_report import trigger_performance
from shared.domain.messages import CONFIRMED, SubscriberEvent
from shared.domain.subscriber import UNSUBSCRIBED
from shared.repositories.trigger_runs import CANCELLED, CAPPED, SENT, SKIPPED, WAITING

ANN = "ann@example.com"
GLOBAL_CAP_ONLY = """
global_frequency_cap: {max: 1, per: 1d}
triggers:
  - {id: browse, event: product_viewed, template: welcome}
  - {id: wishlist, event: wishlist_added, template: welcome}
"""


@pytest.fixture
def world(make_container, function_client) -> Any:
    def build(**settings: Any) -> SimpleNamespace:
        clock, mailer = FakeClock(), RecordingMailer()
        c = make_container(overrides={"clock": clock, "mailer": mailer},
                           events_api_key=API_KEY, **settings)  # fmt: skip
        events = function_client("events")

        def post(*bodies: dict) -> None:
            for body in bodies:
                response = post_events(events, body)
                assert response.status_code == 202, response.get_json()
            pipeline.drain()

        pipeline = Pipeline(c)
        return SimpleNamespace(container=c, clock=clock, mailer=mailer, post=post,
                               pipeline=pipeline, function_client=function_client)  # fmt: skip

    return build


def runs(w: SimpleNamespace, trigger_id: str | None = None) -> list[dict]:
    """The trigger run documents (of one trigger), as stored."""
    stored = w.container.documents.query("trigger_runs", limit=500)
    return [d for _, d in stored if trigger_id is None or d["trigger_id"] == trigger_id]


def cart(at: float, key: str = "cart-1", items: list | None = None) -> dict:
    return event(ANN, "cart_abandoned", at, key, items=items if items is not None else CART)


def purchase(at: float, key: str = "order-1") -> dict:
    return event(ANN, "purchase", at, key, total=64)


def html_of(mail: Any) -> str:
    parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
    return parsed.get_body(("html",)).get_content()


# --- item 4 of the issue -------------------------------------------------------------------
def test_a_purchase_inside_the_window_means_no_mail(world) -> None:
    w = world()
    add_confirmed(w.container, ANN)
    start = w.clock()
    w.post(cart(start))
    w.clock.advance(0.5 * HOUR)
    w.post(purchase(w.clock()))
    [run] = runs(w, "cart_abandonment")
    assert (run["state"], run["reason"]) == (CANCELLED, "unless:purchase")
    w.clock.advance(2 * HOUR)
    w.pipeline.sweep()
    assert w.mailer.sent == []


def test_without_a_purchase_exactly_one_mail_after_the_delay_with_the_cart(world) -> None:
    w = world()
    add_confirmed(w.container, ANN)
    w.post(cart(w.clock()))
    w.clock.advance(HOUR - 60)
    w.pipeline.sweep()
    assert w.mailer.sent == [], "the wait is one hour"
    w.clock.advance(120)
    w.pipeline.sweep()
    w.pipeline.sweep()
    [mail] = w.mailer.sent
    assert mail.recipient == ANN and mail.subject == "Ann, you left something in your cart"
    html = html_of(mail)
    for shown in ("Blue mug", "Green teapot", "Quantity: 2", "12.50", "39.00",
                  "https://img.example/mug.png"):  # fmt: skip
        assert shown in html
    assert "shop.example" not in html, "item links go through click tracking"
    [run] = runs(w, "cart_abandonment")
    assert run["state"] == SENT
    [send] = w.container.warehouse.query("SELECT trigger_id, message_id FROM events "
                                         "WHERE event_type = 'send'")  # fmt: skip
    assert send == {"trigger_id": "cart_abandonment", "message_id": mail.message_id}


def test_the_same_event_twice_gives_one_mail(world) -> None:
    w = world()
    add_confirmed(w.container, ANN)
    body = cart(w.clock())
    w.post(body, body, {"events": [body, body]})
    w.clock.advance(2 * HOUR)
    w.pipeline.sweep()
    assert len(w.mailer.sent) == 1
    assert len(runs(w, "cart_abandonment")) == 1
    custom = w.container.warehouse.query(
        "SELECT count(*) AS n FROM events WHERE event_type = 'custom' AND trigger_id IS NULL"
    )
    assert custom == [{"n": 1}], "one warehouse row per idempotency key"


def test_the_frequency_cap_holds(world) -> None:
    w = world()
    add_confirmed(w.container, ANN)
    w.post(cart(w.clock(), "cart-1"))
    w.clock.advance(600)
    w.post(cart(w.clock(), "cart-2"))
    w.clock.advance(2 * HOUR)
    w.pipeline.sweep()
    assert len(w.mailer.sent) == 1, "at most 1 per 24h"
    states = sorted((r["state"], r["reason"]) for r in runs(w, "cart_abandonment"))
    assert states == [(CAPPED, "trigger_cap"), (SENT, None)]
    w.clock.advance(24 * HOUR)  # the window has passed: a new cart is mailed again
    w.post(cart(w.clock(), "cart-3"))
    w.clock.advance(2 * HOUR)
    w.pipeline.sweep()
    assert len(w.mailer.sent) == 2


def test_a_global_cap_holds_across_triggers(world, tmp_path) -> None:
    root = template_root_with(tmp_path, GLOBAL_CAP_ONLY)
    w = world(template_root=root)
    add_confirmed(w.container, ANN)
    w.post(event(ANN, "product_viewed", w.clock(), "v1"))
    w.post(event(ANN, "wishlist_added", w.clock(), "w1"))
    assert len(w.mailer.sent) == 1
    assert {(r["trigger_id"], r["state"], r["reason"]) for r in runs(w)} == {
        ("browse", SENT, None), ("wishlist", CAPPED, "global_cap")}  # fmt: skip


# --- quiet hours, ordering, eligibility ------------------------------------------------------
def test_quiet_hours_in_the_subscribers_time_zone_push_the_mail_to_the_morning(world) -> None:
    w = world()
    add_confirmed(w.container, ANN, timezone="America/New_York")  # 10:00 UTC is 06:00 there
    start = w.clock()
    w.post(cart(start))
    w.clock.advance(HOUR + 60)  # 07:01 in New York: still quiet (21:00-08:00)
    w.pipeline.sweep()
    assert w.mailer.sent == []
    [run] = runs(w)
    assert (run["state"], run["reason"]) == (WAITING, "quiet_hours")
    assert run["due_at"] == start + 2 * HOUR, "08:00 EDT is 12:00 UTC"
    w.clock.now = start + 2 * HOUR - 1
    w.pipeline.sweep()
    assert w.mailer.sent == []
    w.clock.now = start + 2 * HOUR
    w.pipeline.sweep()
    assert len(w.mailer.sent) == 1


def test_a_purchase_that_arrives_before_its_cart_event_still_cancels(world) -> None:
    w = world()
    add_confirmed(w.container, ANN)
    start = w.clock()
    w.clock.advance(1860)
    w.post(purchase(start + 1800))  # delivered first, happened half an hour after the cart
    w.post(cart(start))  # the cart's event, delayed on its way
    [run] = runs(w, "cart_abandonment")
    assert run["state"] == WAITING, "nothing to cancel when the purchase came in"
    w.clock.now = start + 2 * HOUR
    w.pipeline.sweep()
    assert w.mailer.sent == []
    [run] = runs(w, "cart_abandonment")
    assert (run["state"], run["reason"]) == (CANCELLED, "unless_event_before_due")


def test_a_purchase_before_the_cart_does_not_cancel_it(world) -> None:
    w = world()
    add_confirmed(w.container, ANN)
    start = w.clock()
    w.post(purchase(start - 600), cart(start))
    w.clock.advance(2 * HOUR)
    w.pipeline.sweep()
    assert len(w.mailer.sent) == 1


def test_only_confirmed_unsuppressed_subscribers_are_mailed(world) -> None:
    w = world()
    add_confirmed(w.container, ANN)
    add_confirmed(w.container, "bob@example.com", status="pending")
    add_confirmed(w.container, "cy@example.com")
    w.container.suppressions.add("cy@example.com", "hard_bounce", w.clock())
    for who in (ANN, "bob@example.com", "cy@example.com"):
        w.post(event(who, "cart_abandoned", w.clock(), f"c-{who}", items=CART))
    w.post(event("nobody@example.com", "cart_abandoned", w.clock(), "c-x", items=CART))
    w.clock.advance(2 * HOUR)
    w.pipeline.sweep()
    assert [m.recipient for m in w.mailer.sent] == [ANN]
    reasons = sorted(r["reason"] or "" for r in runs(w) if r["state"] == SKIPPED)
    assert reasons == ["not_confirmed:pending", "suppressed:hard_bounce"]
    assert len(runs(w)) == 3, "an unknown subscriber's event starts no run"


def test_conditions_on_properties_decide_whether_a_run_starts(world) -> None:
    w = world()
    add_confirmed(w.container, ANN)
    w.post(event(ANN, "cart_abandoned", w.clock(), "no-items", total=5))
    assert runs(w) == [], "the shipped trigger needs an items property"


# --- the welcome series ----------------------------------------------------------------------
def confirm(w: SimpleNamespace, subscriber_id: str, event_id: str = "confirm-1") -> None:
    confirmed = SubscriberEvent(event_id, CONFIRMED, subscriber_id, w.clock())
    w.container.outbox.publish_json(topology.SUBSCRIBER_EVENTS, [asdict(confirmed)])
    w.pipeline.drain()


def test_the_welcome_series_sends_day_0_3_and_7_once(world) -> None:
    w = world()
    ann = add_confirmed(w.container, ANN)
    confirm(w, ann.id)
    confirm(w, ann.id)  # a redelivered confirmation starts no second series
    assert [m.subject for m in w.mailer.sent] == ["Welcome, Ann!"], "day 0 at once, no sweep"
    w.clock.advance(3 * 86400)
    w.pipeline.sweep()
    w.clock.advance(4 * 86400)
    w.pipeline.sweep()
    w.pipeline.sweep()
    assert [m.subject for m in w.mailer.sent] == [
        "Welcome, Ann!", "Ann, three things to try this week",
        "Ann, a week with us: a small thank-you"]  # fmt: skip


def test_an_unsubscribe_stops_the_rest_of_the_series(world) -> None:
    w = world()
    ann = add_confirmed(w.container, ANN)
    confirm(w, ann.id)
    w.container.subscribers.change(ann.id, lambda s: setattr(s, "status", UNSUBSCRIBED) or True)
    w.clock.advance(8 * 86400)
    w.pipeline.sweep()
    assert len(w.mailer.sent) == 1
    assert sorted(r["reason"] or "" for r in runs(w) if r["state"] == SKIPPED) == [
        "not_confirmed:unsubscribed", "not_confirmed:unsubscribed"]  # fmt: skip


# --- reporting -------------------------------------------------------------------------------
def test_the_report_shows_sends_human_clicks_and_conversions_per_trigger(world) -> None:
    w = world()
    # The same weekday and hour, one to two weeks ago: the report reads the warehouse's last
    # 90 days (sql/dashboards), counted from the warehouse's own clock.
    week = 7 * 24 * HOUR
    w.clock.now += week * ((time.time() - w.clock.now) // week - 1)
    add_confirmed(w.container, ANN)
    w.post(cart(w.clock(), "cart-1"), cart(w.clock() + 60, "cart-2"))  # one mail, one capped
    w.clock.advance(2 * HOUR)
    w.pipeline.sweep()
    [mail] = w.mailer.sent
    w.clock.advance(600)
    click = re.search(r'href="http://[^"]+/t(/c/[^"]+)"', html_of(mail))
    assert click, "the mail has tracked links"
    tracking = w.function_client("tracking")
    browser = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) Safari/605.1.15"}
    assert tracking.get(click.group(1), headers=browser).status_code == 302
    w.clock.advance(HOUR)
    w.post(purchase(w.clock(), "order-9"))  # the goal, within 3 days of the mail
    catalog = SqlCatalog("duckdb")
    [figures] = trigger_performance(w.container.warehouse, catalog)
    assert figures.trigger_id == "cart_abandonment"
    assert (figures.sent, figures.unique_clicks, figures.conversions) == (1, 1, 1)
    assert (figures.runs, figures.capped, figures.cancelled) == (2, 1, 0)
    assert figures.conversion_rate == 1.0 and figures.click_rate == 1.0
