"""Demo data for an empty local data directory: subscribers over eight weeks, a regular
campaign and an A/B campaign with deliveries, hard and soft bounces, complaints, human and
machine opens, clicks over several days and unsubscribes, so that every dashboard chart has
something to show.

The data is made up but shaped like real mail: about 2.5% bounces, opens trailing off over a
few days, Apple Mail Privacy Protection opening nearly every iCloud message at once, and
variant B's subject winning. The same seed and `now` give the same data; ids are deterministic,
so writing it twice changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.domain import events as ev
from shared.domain.behaviour import TRIGGER_RUN
from shared.domain.events import AnalyticsEvent, stable_id, utc_iso
from shared.domain.subscriber import CONFIRMED, PENDING, UNSUBSCRIBED, Subscriber

DAY = 86_400.0
HOUR = 3_600.0
WEEKS = 8
SUBSCRIBERS = 2_400
PROVIDERS = (("gmail", 0.42), ("outlook", 0.2), ("yahoo", 0.14), ("icloud", 0.12), ("other", 0.12))
DOMAINS = {"gmail": "example.com", "outlook": "example.net", "yahoo": "example.org",
           "icloud": "example.edu", "other": "demo.example"}  # fmt: skip
LINKS = (
    "https://shop.example.com/spring",
    "https://shop.example.com/new-arrivals",
    "https://shop.example.com/stores",
)


@dataclass(frozen=True)
class DemoCampaign:
    """What a demo campaign is and how its recipients behave."""

    id: str
    name: str
    days_ago: float
    variants: dict[str, str]  # variant name -> subject
    open_rate: dict[str, float]  # variant -> share of delivered messages opened by a person
    click_rate: dict[str, float]  # variant -> share of openers who click

    def document(self, now: float) -> dict[str, Any]:
        sent_at = now - self.days_ago * DAY
        return {
            "id": self.id,
            "name": self.name,
            "status": "sent",
            "subject": next(iter(self.variants.values())),
            "variants": [
                {"name": name, "subject": subject, "weight": round(100 / len(self.variants))}
                for name, subject in self.variants.items()
            ],
            "template": "newsletter",
            "ab": {
                "variants": [
                    {"name": n, "subject": subject} for n, subject in self.variants.items()
                ],
                "test_fraction": 1.0,
                "metric": "clicks",
                "window_hours": 48,
                "min_sample": 100,
            }
            if len(self.variants) > 1
            else None,
            "created_at": sent_at - 2 * DAY,
            "scheduled_at": sent_at,
            "sent_at": sent_at,
            "demo": True,
        }


NEWSLETTERS = (
    "Welcome to spring",
    "What we learned in May",
    "June: three things we made for you",
    "Behind the scenes",
    "Your summer reading list",
    "Customer stories",
)
CAMPAIGNS = (
    *(DemoCampaign(f"demo-newsletter-{n + 1}", f"Newsletter #{n + 1}", 48.4 - 7 * n,
                   {"A": subject}, {"A": 0.3 + 0.01 * (n % 3)}, {"A": 0.12 + 0.01 * (n % 2)})
      for n, subject in enumerate(NEWSLETTERS)),
    DemoCampaign("demo-summer-sale-ab", "Summer sale (subject A/B test)", 6.5,
                 {"A": "Our summer sale starts today", "B": "48 hours only: up to 40% off"},
                 {"A": 0.31, "B": 0.38}, {"A": 0.14, "B": 0.2}),
)  # fmt: skip
DRAFT = {"id": "demo-autumn-newsletter", "name": "Autumn newsletter", "status": "draft",
         "template": "newsletter", "subject": "Autumn picks", "demo": True}  # fmt: skip


@dataclass
class DemoData:
    subscribers: list[Subscriber] = field(default_factory=list)
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Builder:
    now: float
    id_for: Callable[[str], str]
    rng: random.Random
    data: DemoData = field(default_factory=DemoData)
    providers: dict[str, str] = field(default_factory=dict)  # subscriber id -> mailbox provider

    def event(self, kind: str, at: float, subscriber: Subscriber, **fields: Any) -> None:
        cause = (kind, subscriber.id, fields.get("message_id"), fields.get("link_url"), at)
        row = AnalyticsEvent(
            event_id=stable_id("demo", *cause),
            event_type=kind,
            occurred_at=utc_iso(at),
            subscriber_id=subscriber.id,
            mailbox_provider=self.providers[subscriber.id],
            **fields,
        ).to_row()
        row["received_at"] = utc_iso(at + self.rng.uniform(0.2, 3.0))
        self.data.events.append(row)


def build(now: float, id_for: Callable[[str], str], seed: int = 2024) -> DemoData:
    """The demo data set, ending at `now`; `id_for` turns an address into a subscriber id."""
    b = _Builder(now, id_for, random.Random(seed))
    for n in range(SUBSCRIBERS):
        _subscriber_lifecycle(b, n)
    for campaign in CAMPAIGNS:
        b.data.campaigns.append(campaign.document(now))
        _send_campaign(b, campaign)
    b.data.campaigns.append({**DRAFT, "created_at": now - DAY})
    b.rng = random.Random(seed + 1)  # its own sequence: the campaigns' data stays as it was
    for s in b.data.subscribers:
        _trigger_activity(b, s)
    return b.data


def _trigger_activity(b: _Builder, s: Subscriber) -> None:
    """The welcome series after confirmation, and now and then an abandoned cart."""
    if s.confirmed_at is None:
        return
    _welcome_series(b, s, s.confirmed_at)
    if b.rng.random() < 0.12:
        _abandoned_cart(b, s, s.confirmed_at + b.rng.uniform(0.5, 40) * DAY)


def _subscriber_lifecycle(b: _Builder, n: int) -> None:
    """Signup (more of them lately: the list is growing), confirmation, maybe unsubscribe."""
    provider = b.rng.choices([p for p, _ in PROVIDERS], [w for _, w in PROVIDERS])[0]
    email = f"demo{n:04d}@{DOMAINS[provider]}"
    signed_up = b.now - WEEKS * 7 * DAY * (1 - b.rng.random() ** 0.7)
    s = Subscriber(id=b.id_for(email), email=email, created_at=signed_up, first_name=f"Demo {n}")
    s.consent.append({"action": "signup", "at": signed_up, "source": "demo"})
    b.providers[s.id] = provider
    b.data.subscribers.append(s)
    b.event(ev.SIGNUP, signed_up, s, reason="form")
    if not _confirmation_mail(b, s, signed_up + b.rng.uniform(2, 30)):
        s.status = PENDING
        return
    confirm_at = signed_up + b.rng.expovariate(1 / (3 * HOUR))
    if b.rng.random() > 0.88 or confirm_at > b.now:
        s.status = PENDING
        return
    s.status, s.confirmed_at = CONFIRMED, confirm_at
    b.event(ev.CONFIRM, confirm_at, s, reason="link")
    leave_at = confirm_at + b.rng.expovariate(1 / (400 * DAY))
    if leave_at < b.now:
        s.status, s.unsubscribed_at = UNSUBSCRIBED, leave_at
        b.event(ev.UNSUBSCRIBE, leave_at, s, reason="preferences")


def _confirmation_mail(b: _Builder, s: Subscriber, sent_at: float) -> bool:
    """The double opt-in mail (no campaign); False when it bounced (a mistyped address)."""
    message_id = f"confirm.{s.id}@mailpipe.local"
    b.event(ev.SEND, sent_at, s, provider="smtp", message_id=message_id)  # a transactional mail
    if b.rng.random() < 0.03:
        b.event(ev.BOUNCE, sent_at + 20, s, provider="smtp", reason="hard", message_id=message_id)
        return False
    b.event(ev.DELIVERED, sent_at + b.rng.uniform(1, 30), s, provider="smtp", message_id=message_id)
    return True


# The triggers of templates/triggers/triggers.yaml: (id, delay after the event, goal window).
WELCOME_SERIES = (("welcome_day0", 60.0), ("welcome_day3", 3 * DAY), ("welcome_day7", 7 * DAY))
GOAL = ("purchase", 7 * DAY)
CART = ("cart_abandonment", HOUR, 3 * DAY)


def _welcome_series(b: _Builder, s: Subscriber, confirmed_at: float) -> None:
    """The three welcome mails after confirmation, as far as they are due by now."""
    for trigger_id, delay in WELCOME_SERIES:
        due = confirmed_at + delay
        if due >= b.now:
            return  # still waiting
        if s.unsubscribed_at is not None and s.unsubscribed_at < due:
            _trigger_run(b, s, trigger_id, due, "skipped", None, GOAL[1])
            return
        _trigger_mail(b, s, trigger_id, due, GOAL[1], convert=0.04)


def _abandoned_cart(b: _Builder, s: Subscriber, left_at: float) -> None:
    """A cart left behind; the reminder an hour later unless the person bought meanwhile."""
    trigger_id, wait, within = CART
    if left_at + wait >= b.now:
        return
    b.event(ev.CUSTOM, left_at, s, properties={"name": "cart_abandoned", "properties": {}})
    if b.rng.random() < 0.3:  # bought within the hour: the run is cancelled
        _goal(b, s, left_at + b.rng.uniform(60, wait - 60))
        _trigger_run(b, s, trigger_id, left_at + wait, "cancelled", None, within)
        return
    _trigger_mail(b, s, trigger_id, left_at + wait, within, convert=0.15)


def _trigger_mail(
    b: _Builder, s: Subscriber, trigger_id: str, at: float, within: float, convert: float
) -> None:
    """One trigger mail: its run's outcome, the send, delivery, opens, clicks, a purchase."""
    message_id = f"{trigger_id}.{s.id}@mailpipe.local"
    common = {"trigger_id": trigger_id, "message_id": message_id}
    _trigger_run(b, s, trigger_id, at, "sent", message_id, within)
    b.event(ev.SEND, at, s, provider="smtp", **common)
    delivered_at = at + b.rng.uniform(1, 60)
    b.event(ev.DELIVERED, delivered_at, s, provider="smtp", **common)
    if b.rng.random() < 0.45:
        opened_at = _later(b, delivered_at, 0.5 * DAY)
        b.event(ev.OPEN, opened_at, s, is_machine=False, **common)
        if b.rng.random() < 0.25:
            b.event(ev.CLICK, opened_at + b.rng.uniform(5, 120), s, is_machine=False,
                    link_url=LINKS[1], **common)  # fmt: skip
    if b.rng.random() < convert:
        bought_at = at + b.rng.uniform(HOUR, within)
        if bought_at < b.now:
            _goal(b, s, bought_at)


def _trigger_run(
    b: _Builder, s: Subscriber, trigger_id: str, at: float, outcome: str,
    message_id: str | None, within: float,
) -> None:  # fmt: skip
    """The warehouse record the triggers function writes when a run ends."""
    properties = {"name": TRIGGER_RUN, "run_id": stable_id("demo-run", trigger_id, s.id, at),
                  "event": "", "detail": "", "goal": GOAL[0],
                  "goal_within_s": int(within)}  # fmt: skip
    b.event(ev.CUSTOM, at, s, trigger_id=trigger_id, message_id=message_id, reason=outcome,
            properties=properties)  # fmt: skip


def _goal(b: _Builder, s: Subscriber, at: float) -> None:
    b.event(ev.CUSTOM, at, s, properties={"name": GOAL[0], "properties": {"total": 42.0}})


def _send_campaign(b: _Builder, campaign: DemoCampaign) -> None:
    start = b.now - campaign.days_ago * DAY
    audience = [s for s in b.data.subscribers if _was_subscribed(s, start)]
    names = list(campaign.variants)
    for i, s in enumerate(audience):
        variant = names[i % len(names)]
        sent_at = start + i * (1800 / max(1, len(audience)))  # a half-hour send
        message_id = f"{campaign.id}.{s.id}@mailpipe.local"
        common = {"campaign_id": campaign.id, "variant": variant, "message_id": message_id}
        b.event(ev.SEND, sent_at, s, provider="smtp", **common)
        _recipient_behaviour(b, campaign, s, sent_at, common)


def _was_subscribed(s: Subscriber, at: float) -> bool:
    return (
        s.confirmed_at is not None
        and s.confirmed_at < at
        and (s.unsubscribed_at is None or s.unsubscribed_at > at)
    )


def _recipient_behaviour(
    b: _Builder, campaign: DemoCampaign, s: Subscriber, sent_at: float, common: dict[str, Any]
) -> None:
    fate = b.rng.random()
    if fate < 0.025:
        kind = "hard" if b.rng.random() < 0.55 else "soft"
        b.event(ev.BOUNCE, sent_at + b.rng.uniform(5, 600), s, provider="smtp", reason=kind,
                **common)  # fmt: skip
        return
    delivered_at = sent_at + b.rng.uniform(1, 90)
    b.event(ev.DELIVERED, delivered_at, s, provider="smtp", **common)
    if b.providers[s.id] == "icloud" and b.rng.random() < 0.85:  # Mail Privacy Protection
        b.event(ev.OPEN, delivered_at + b.rng.uniform(10, 900), s, is_machine=True, **common)
    if b.rng.random() < 0.0018:
        b.event(ev.COMPLAINT, _later(b, delivered_at, 2 * HOUR), s, provider="smtp",
                **common)  # fmt: skip
        return
    _engagement(b, campaign, s, delivered_at, common)


def _engagement(
    b: _Builder, campaign: DemoCampaign, s: Subscriber, delivered_at: float, common: dict[str, Any]
) -> None:
    variant = common["variant"]
    if b.rng.random() < 0.03:  # a link scanner follows every link at once
        for url in LINKS:
            b.event(ev.CLICK, delivered_at + 2, s, is_machine=True, link_url=url, **common)
    if b.rng.random() >= campaign.open_rate[variant]:
        return
    opened_at = _later(b, delivered_at, 0.8 * DAY)
    b.event(ev.OPEN, opened_at, s, is_machine=False, **common)
    if b.rng.random() < 0.3:
        b.event(ev.OPEN, _later(b, opened_at, DAY), s, is_machine=False, **common)
    if b.rng.random() < campaign.click_rate[variant]:
        url = b.rng.choices(LINKS, (0.6, 0.3, 0.1))[0]
        for n in range(1 + int(b.rng.random() < 0.25)):  # some people click twice
            b.event(ev.CLICK, opened_at + b.rng.uniform(5, 300) + n * 60, s, is_machine=False,
                    link_url=url, **common)  # fmt: skip
    if b.rng.random() < 0.006:
        b.event(ev.UNSUBSCRIBE, opened_at + 60, s, reason="link", **common)


def _later(b: _Builder, after: float, mean_s: float) -> float:
    """A moment after `after`, exponentially distributed, never in the future."""
    return min(b.now - 1, after + b.rng.expovariate(1 / mean_s))
