"""Dispatch paced to MAILPIPE_CAMPAIGN_SEND_RATE_PER_S: after each page it waits until the
recipients published fit the rate, so a campaign's backlog waits in its audience and not in
Pub/Sub. Driven through the real local pipeline with a pace whose clock and sleep are fakes."""

from __future__ import annotations

from campaign_support import Pipeline, add_audience
from support import SleepClock

from shared.bootstrap import Container
from shared.services.pacing import Pacer


def test_dispatch_publishes_no_faster_than_the_rate(local: Container, mailer) -> None:
    """450 recipients in pages of 100 at 200/s: 0.5 s after each full page, 0.25 s after the
    last, 2.25 s in all; everyone is sent exactly once."""
    clock = SleepClock()
    local.__dict__["pacer"] = Pacer(200, clock=clock, sleep=clock.sleep)
    add_audience(local, 450)
    campaign = local.campaign_service.create({"name": "Paced", "template": "newsletter"})
    local.campaign_service.send_now(campaign.id)
    Pipeline(local).drain()
    assert clock.sleeps == [0.5, 0.5, 0.5, 0.5, 0.25]
    assert sum(clock.sleeps) == 450 / 200
    sent = [email.recipient for email in mailer.sent]
    assert len(sent) == len(set(sent)) == 450


def test_unpaced_dispatch_never_waits(local: Container, mailer) -> None:
    clock = SleepClock()
    local.__dict__["pacer"] = Pacer(0, clock=clock, sleep=clock.sleep)
    add_audience(local, 250)
    campaign = local.campaign_service.create({"name": "Unpaced", "template": "newsletter"})
    local.campaign_service.send_now(campaign.id)
    Pipeline(local).drain()
    assert clock.sleeps == []
    assert len(mailer.sent) == 250
