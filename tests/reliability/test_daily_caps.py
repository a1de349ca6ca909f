"""Daily caps and warm-up, on a fake clock across UTC days: a campaign larger than today's
allowance sends what the cap allows, holds, and goes on the next day from where it stopped, in
audience order, with nobody sent twice; two campaigns share a day's allowance; a replayed page
reservation is counted once; `campaign show`, the campaign page and the sweep say when the rest
goes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from campaign_support import Pipeline, add_audience
from click.testing import CliRunner
from support import FakeClock, RecordingMailer

from shared import bootstrap
from shared.bootstrap import Container
from shared.cli.cmd_campaign import campaign as campaign_cli
from shared.dashboard.app import create_dashboard_app
from shared.domain.errors import ConfigurationError
from shared.domain.sending_caps import DailyCap, grant, next_day_starts
from shared.metering import OperationMeter
from shared.repositories.sending_days import SendingDays
from shared.settings import Settings

DAY1 = datetime(2027, 1, 15, 9, 0, tzinfo=UTC).timestamp()
DAY = 86_400.0
DOMAIN = "mailpipe.local"  # the default sender's


@pytest.fixture
def capped(
    local_settings: Settings, mailer: RecordingMailer, clock: FakeClock
) -> Iterator[Container]:
    """Pages of 100; warm-up 150 on day 1, 300 on day 2, then at most 1,000 a day."""
    clock.now = DAY1
    settings = replace(local_settings, campaign_page_size=100, campaign_pages_per_run=2,
                       campaign_gate_ttl_s=0.0, warmup_volumes=("150", "300"),
                       warmup_start="2027-01-15", daily_cap=1000)  # fmt: skip
    container = Container(settings, meter=OperationMeter(), clock=clock,
                          overrides={"mailer": mailer})  # fmt: skip
    bootstrap.install(container)
    yield container
    bootstrap.install(None)


def sent_ids(mailer: RecordingMailer) -> list[str]:
    return [e.subscriber_id for e in mailer.sent]


def test_a_campaign_larger_than_the_allowance_goes_on_day_by_day(
    capped: Container, mailer: RecordingMailer, clock: FakeClock
) -> None:
    people = sorted(p.id for p in add_audience(capped, 500))
    service = capped.campaign_service
    campaign = service.create({"name": "Big", "template": "newsletter"})
    service.send_now(campaign.id)
    pipeline = Pipeline(capped)
    pipeline.drain()

    assert sorted(sent_ids(mailer)) == people[:150]  # day 1: the first 150, in audience order
    held = service.get(campaign.id)
    assert held.status == "sending"
    assert held.held_until() == next_day_starts(DAY1)
    shown = service.show(campaign.id)
    assert shown["allowance"] == {"domain": DOMAIN, "day": "2027-01-15", "limit": 150,
                                  "used": 150, "left_today": 0,
                                  "held_until": next_day_starts(DAY1)}  # fmt: skip

    clock.now += 3600  # later the same day: the sweep leaves it alone
    pipeline.sweep()
    pipeline.drain()
    assert len(mailer.sent) == 150

    clock.now = next_day_starts(DAY1) + 60  # day 2: 300 more
    pipeline.sweep()
    pipeline.drain()
    assert sorted(sent_ids(mailer)[150:]) == people[150:450]
    assert service.get(campaign.id).status == "sending"

    clock.now += DAY  # day 3: the warm-up is over, the cap is 1,000; the last 50 go
    pipeline.sweep()
    pipeline.drain()
    assert service.get(campaign.id).status == "sent"
    got = Counter(sent_ids(mailer))
    assert sorted(got) == people and set(got.values()) == {1}
    assert SendingDays(capped.documents).usage(DOMAIN, date(2027, 1, 17), 1000).used == 50


def test_two_campaigns_share_the_days_allowance(
    capped: Container, mailer: RecordingMailer, clock: FakeClock
) -> None:
    people = sorted(p.id for p in add_audience(capped, 100))
    service = capped.campaign_service
    first = service.create({"name": "One", "template": "newsletter"})
    second = service.create({"name": "Two", "template": "newsletter"})
    service.send_now(first.id)
    service.send_now(second.id)
    pipeline = Pipeline(capped)
    pipeline.drain()
    assert len(mailer.sent) == 150  # not 200: one allowance for the domain
    assert SendingDays(capped.documents).usage(DOMAIN, date(2027, 1, 15), 150).used == 150

    clock.now = next_day_starts(DAY1) + 60
    pipeline.sweep()
    pipeline.drain()
    per_campaign = Counter((e.campaign_id, e.subscriber_id) for e in mailer.sent)
    assert set(per_campaign.values()) == {1} and len(per_campaign) == 200
    for campaign in (first, second):
        assert service.get(campaign.id).status == "sent"
        assert sorted(s for c, s in per_campaign if c == campaign.id) == people


def test_a_replayed_page_gets_its_grant_again_and_counts_once(capped: Container) -> None:
    days = SendingDays(capped.documents)
    day = date(2027, 1, 15)
    assert days.reserve(DOMAIN, day, "c:all:000001", 100, 150) == 100
    assert days.reserve(DOMAIN, day, "c:all:000001", 100, 150) == 100  # redelivered
    assert days.reserve(DOMAIN, day, "c:all:000002", 100, 150) == 50  # what is left
    assert days.usage(DOMAIN, day, 150).used == 150
    days.settle(DOMAIN, day, "c:all:000001", 80)  # 20 were not eligible: given back
    days.settle(DOMAIN, day, "c:all:000001", 80)
    assert days.usage(DOMAIN, day, 150).used == 130
    assert days.reserve(DOMAIN, day, "other:all:000001", 100, 150) == 20
    assert days.reserve(DOMAIN, day, "late:all:000001", 100, 150) == 0
    assert days.usage(DOMAIN, date(2027, 1, 16), 150).used == 0  # a new day, a new counter


def test_show_and_the_campaign_page_say_what_is_left_and_when_it_goes(
    capped: Container, clock: FakeClock
) -> None:
    add_audience(capped, 200)
    service = capped.campaign_service
    campaign = service.create({"name": "Held", "template": "newsletter"})
    service.send_now(campaign.id)
    Pipeline(capped).drain()

    shown = CliRunner().invoke(campaign_cli, ["show", campaign.id])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())  # rich wraps at the terminal's width
    assert "150 of 150 recipients dispatched today (2027-01-15), 0 left" in text
    assert "the rest goes at 2027-01-16 00:00" in text

    app = create_dashboard_app(lambda: capped.dashboards, None, service.sending)
    page = app.test_client().get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-figure="left-today">0<' in page
    assert 'data-figure="held-until">2027-01-16 00:00 UTC<' in page


def test_the_schedule_rises_day_by_day_and_is_checked() -> None:
    listed = DailyCap(daily_cap=1000, volumes=(150, 300), start=date(2027, 1, 15))
    assert [listed.limit(date(2027, 1, d)) for d in (14, 15, 16, 17, 30)] == [
        150, 150, 300, 1000, 1000
    ]  # fmt: skip
    grown = DailyCap(daily_cap=5000, start_volume=1000, growth=2.0, start=date(2027, 1, 1))
    assert [grown.limit(date(2027, 1, d)) for d in (1, 2, 3, 4)] == [1000, 2000, 4000, 5000]
    assert DailyCap(daily_cap=700).limit(date(2030, 1, 1)) == 700
    assert DailyCap().limit(date(2030, 1, 1)) is None and not DailyCap().enabled
    for bad in ({"volumes": (100,)}, {"daily_cap": -1}, {"start_volume": 10, "growth": 0.5,
                                                          "start": date(2027, 1, 1)}):  # fmt: skip
        with pytest.raises(ConfigurationError):
            DailyCap(**bad)  # type: ignore[arg-type]
    assert grant(100, 500, 1000) == 100  # fits
    assert grant(100, 60, 1000) == 60  # a part, bigger than a twentieth of the day
    assert grant(100, 30, 1000) == 0  # a sliver: wait for tomorrow
    assert grant(100, 5, 60) == 5  # a small day takes small parts
