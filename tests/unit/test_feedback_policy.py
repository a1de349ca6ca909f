"""The feedback policy: bounce classification, hard bounces, complaints, and soft bounces counted
on the subscriber document (no warehouse query per bounce)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from shared.bootstrap import Container
from shared.domain import events as ev
from shared.domain import feedback as fb
from shared.domain.errors import InvalidInput
from shared.domain.events import AnalyticsEvent, decode_events, stable_id, utc_iso
from shared.domain.feedback import DAY_S, FeedbackEvent, SoftBouncePolicy
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.repositories import suppressions as reasons

EMAIL = "ann@example.com"

# --- classification ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "smtp", "enhanced", "expected"),
    [(None, "550", None, fb.HARD), (None, "421", None, fb.SOFT), (None, "550", "4.2.2", fb.SOFT),
     (None, "421", "5.1.1", fb.HARD), (None, None, None, fb.SOFT),
     (fb.SOFT, "550", "5.1.1", fb.SOFT),
     (fb.HARD, "421", None, fb.HARD)],
)  # fmt: skip
def test_bounce_type(verdict: str | None, smtp: str | None, enhanced: str | None, expected: str):
    assert fb.bounce_type(verdict, smtp, enhanced) == expected


@pytest.mark.parametrize(
    ("text", "codes"),
    [("smtp; 550 5.1.1 <a@b.example>... User unknown", ("550", "5.1.1")),
     ("452-4.2.2 The email account is over quota", ("452", "4.2.2")),
     ("421 try again", ("421", None)), ("delivery failed", (None, None)), (None, (None, None)),
     ("id 1550.2 at 10.0.0.5", (None, None))],
)  # fmt: skip
def test_codes_in_diagnostics(text: str | None, codes: tuple) -> None:
    assert fb.codes_in(text) == codes


# --- the policy as pure logic ----------------------------------------------------------------


def test_three_distinct_messages_within_the_window_suppress() -> None:
    policy = SoftBouncePolicy(3, 30)
    now = 100 * DAY_S
    recent = policy.record([], "m1", now - 3 * DAY_S, now)
    recent = policy.record(recent, "m2", now - 2 * DAY_S, now)
    assert not policy.suppresses(recent)
    assert policy.suppresses(policy.record(recent, "m3", now, now))


def test_bounces_older_than_the_window_drop_out() -> None:
    policy = SoftBouncePolicy(3, 30)
    now = 100 * DAY_S
    recent = [["m1", now - 40 * DAY_S], ["m2", now - 31 * DAY_S]]
    after = policy.record(recent, "m3", now, now)
    assert after == [["m3", now]] and not policy.suppresses(after)
    assert policy.record([], "late", now - 31 * DAY_S, now) == []  # a very late report


def test_a_message_counts_once_however_often_it_bounced() -> None:
    policy = SoftBouncePolicy(3, 30)
    recent: list = []
    for at in (1.0, 2.0, 3.0):
        recent = policy.record(recent, "m1", at, 10.0)
    assert recent == [["m1", 1.0]] and not policy.suppresses(recent)


def test_the_record_stays_small() -> None:
    policy = SoftBouncePolicy(3, 30)
    recent: list = []
    for n in range(50):
        recent = policy.record(recent, f"m{n}", float(n), 100.0)
    assert [k for k, _ in recent] == ["m47", "m48", "m49"]


def test_the_policy_must_be_satisfiable() -> None:
    with pytest.raises(InvalidInput):
        SoftBouncePolicy(0, 30)
    with pytest.raises(InvalidInput):
        SoftBouncePolicy(3, 0)


# --- the service against the local stores ------------------------------------------------------


def settle(container: Container) -> None:
    """Move what the services published to analytics-events into the warehouse."""
    while deliveries := container.bus.pull("warehouse-on-analytics-events", 100):
        for d in deliveries:
            container.warehousing.handle(decode_events(d.data))
            container.bus.ack(d.subscription, d.message_id)


def record_sends(container: Container, count: int, start: float) -> list[str]:
    """`count` sends to EMAIL, one per campaign, oldest first; returns their Message-IDs."""
    sid = container.subscribers.id_for(EMAIL)
    ids = [f"m{n}@mailpipe.test" for n in range(count)]
    container.warehouse.append([
        AnalyticsEvent(stable_id(ev.SEND, m), ev.SEND, utc_iso(start + n), subscriber_id=sid,
                       campaign_id=f"c{n}", message_id=m).to_row()
        for n, m in enumerate(ids)
    ])  # fmt: skip
    return ids


def soft_bounce(message_id: str, at: float, event_id: str | None = None) -> FeedbackEvent:
    return FeedbackEvent("sendgrid", event_id or f"sg-{message_id}", fb.BOUNCE, EMAIL, at,
                         message_id=message_id, bounce_type=fb.SOFT, smtp_code="452")  # fmt: skip


@pytest.fixture
def subscribed(make_container: Callable[..., Container]) -> Callable[..., Container]:
    def build(**settings: object) -> Container:
        c = make_container(**settings)
        c.subscribers.save(Subscriber(c.subscribers.id_for(EMAIL), EMAIL, status=CONFIRMED))
        return c

    return build


@pytest.mark.parametrize("threshold", [3, 2])
def test_soft_bounces_suppress_at_the_configured_threshold(
    subscribed: Callable[..., Container], threshold: int
) -> None:
    c = subscribed(soft_bounce_threshold=threshold)
    now = time.time()
    ids = record_sends(c, threshold + 2, now - 3600)
    for n, message_id in enumerate(ids[:threshold], start=1):
        c.feedback.handle(soft_bounce(message_id, now - 60 + n))
        expected = reasons.SOFT_BOUNCES if n == threshold else None
        assert c.suppressions.reason(EMAIL) == expected, f"after {n} soft bounces"
    assert c.subscribers.get(c.subscribers.id_for(EMAIL)).suppressed == reasons.SOFT_BOUNCES


def test_the_policy_queries_no_warehouse(subscribed: Callable[..., Container]) -> None:
    """Each soft bounce costs the subscriber document's read and write, no warehouse query."""
    c = subscribed()
    now = time.time()
    for n in range(3):
        c.feedback.handle(soft_bounce(f"m{n}@mailpipe.test", now - 60 + n))
    assert c.suppressions.reason(EMAIL) == reasons.SOFT_BOUNCES
    assert "bigquery.query" not in c.meter.snapshot()


def test_soft_bounces_spread_beyond_the_window_do_not_suppress(
    subscribed: Callable[..., Container],
) -> None:
    c = subscribed(soft_bounce_window_days=30)
    now = time.time()
    for n, days_ago in enumerate((70, 40, 1)):
        c.feedback.handle(soft_bounce(f"m{n}@mailpipe.test", now - days_ago * DAY_S))
    assert c.suppressions.reason(EMAIL) is None


def test_a_redelivered_soft_bounce_is_counted_once(subscribed: Callable[..., Container]) -> None:
    c = subscribed()
    now = time.time()
    ids = record_sends(c, 5, now - 3600)
    for _ in range(3):  # the provider retries the same event
        c.feedback.handle(soft_bounce(ids[-1], now - 30))
        settle(c)
    c.feedback.handle(soft_bounce(ids[-2], now - 20))
    settle(c)
    assert c.suppressions.reason(EMAIL) is None
    rows = c.warehouse.query("SELECT count(*) AS n FROM events WHERE event_type = 'bounce'")
    assert rows[0]["n"] == 2


def test_a_hard_bounce_suppresses_at_once(subscribed: Callable[..., Container]) -> None:
    c = subscribed()
    c.feedback.handle(FeedbackEvent("ses", "f1", fb.BOUNCE, EMAIL, time.time(),
                                    bounce_type=fb.HARD, smtp_code="550"))  # fmt: skip
    assert c.suppressions.reason(EMAIL) == reasons.HARD_BOUNCE


def test_a_complaint_suppresses_and_unsubscribes(subscribed: Callable[..., Container]) -> None:
    c = subscribed()
    c.feedback.handle(FeedbackEvent("mailgun", "x:1", fb.COMPLAINT, EMAIL, time.time()))
    subscriber = c.subscribers.get(c.subscribers.id_for(EMAIL))
    assert (subscriber.status, subscriber.suppressed) == ("unsubscribed", reasons.COMPLAINT)
    assert c.suppressions.reason(EMAIL) == reasons.COMPLAINT


def test_esp_opens_are_classified(subscribed: Callable[..., Container]) -> None:
    c = subscribed()
    now = time.time()
    c.feedback.handle(FeedbackEvent("ses", "o1", fb.OPEN, EMAIL, now, user_agent="Mozilla/5.0"))
    c.feedback.handle(
        FeedbackEvent(
            "ses", "o2", fb.OPEN, EMAIL, now, user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_5)"
        )
    )
    settle(c)
    rows = c.warehouse.query("SELECT is_machine FROM events WHERE event_type = 'open' "
                             "ORDER BY is_machine")  # fmt: skip
    assert [r["is_machine"] for r in rows] == [False, True]


# --- rates against Gmail's lines ---------------------------------------------------------------


def events(kind: str, count: int, campaign: str, day: str, reason: str | None = None) -> list:
    return [
        AnalyticsEvent(f"{kind}-{reason}-{campaign}-{day}-{n}", kind, f"{day}T12:00:00.000Z",
                       subscriber_id=f"s{n}", campaign_id=campaign, reason=reason).to_row()
        for n in range(count)
    ]  # fmt: skip


def test_bounce_and_complaint_rates_per_campaign_and_day(container: Container) -> None:
    day1, day2 = "2026-11-02", "2026-11-03"
    container.warehouse.append(
        events(ev.SEND, 1000, "c1", day1) + events(ev.COMPLAINT, 2, "c1", day1)
        + events(ev.BOUNCE, 4, "c1", day1, "hard") + events(ev.BOUNCE, 1, "c1", day1, "soft")
        + events(ev.SEND, 2000, "c2", day1) + events(ev.DELIVERED, 1000, "c2", day1)
        + events(ev.COMPLAINT, 4, "c2", day1)
        + events(ev.SEND, 500, "c1", day2)
    )  # fmt: skip
    rates = {(r.campaign_id, str(r.day)): r for r in container.deliverability.rates()}
    c1 = rates[("c1", day1)]
    assert (c1.sent, c1.bounces, c1.hard_bounces, c1.complaints) == (1000, 5, 4, 2)
    assert c1.complaint_rate == pytest.approx(0.002) and c1.bounce_rate == pytest.approx(0.005)
    assert (c1.complaint_over_recommended, c1.complaint_over_maximum) == (True, False)
    assert (c1.bounce_over_recommended, c1.bounce_over_maximum) == (True, True)
    c2 = rates[("c2", day1)]  # complaints are counted against delivered mail when known
    assert c2.complaint_rate == pytest.approx(0.004) and c2.complaint_over_maximum
    quiet = rates[("c1", day2)]
    assert (quiet.complaint_rate, quiet.bounce_rate, quiet.bounce_over_recommended) == (0, 0, False)
    assert {(r.campaign_id, str(r.day)) for r in container.deliverability.over_the_line()} == {
        ("c1", day1), ("c2", day1)}  # fmt: skip
