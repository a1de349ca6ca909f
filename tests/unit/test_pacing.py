"""The pace of dispatch (shared/services/pacing.py) and its setting."""

from __future__ import annotations

import pytest
from support import SleepClock

from shared import settings as settings_module
from shared.domain.errors import ConfigurationError
from shared.services.pacing import Pacer


def test_waits_only_for_what_the_work_did_not_take() -> None:
    clock = SleepClock(100.0)
    run = Pacer(1000, clock=clock, sleep=clock.sleep).start()
    assert run.after(500) == 0.5  # published at once: wait out the rate
    clock.now += 0.8  # a slow page: it took longer than its share
    assert run.after(500) == 0.0
    assert run.after(500) == pytest.approx(0.2)  # 1,500 fit in 1.5 s; 1.3 s have gone by
    assert clock.sleeps == [0.5, pytest.approx(0.2)]


def test_each_invocation_has_its_own_start() -> None:
    clock = SleepClock(100.0)
    pacer = Pacer(100, clock=clock, sleep=clock.sleep)
    pacer.start().after(100)
    clock.now += 60
    assert pacer.start().after(100) == 1.0


def test_the_setting() -> None:
    loaded = settings_module.load({"MAILPIPE_CAMPAIGN_SEND_RATE_PER_S": "250"})
    assert loaded.campaign_send_rate_per_s == 250
    assert settings_module.load({}).campaign_send_rate_per_s == 0  # local runs are unpaced
    with pytest.raises(ConfigurationError, match="MAILPIPE_CAMPAIGN_SEND_RATE_PER_S"):
        settings_module.load({"MAILPIPE_CAMPAIGN_SEND_RATE_PER_S": "-1"})
    # 50 pages of 500 at 20/s would take 1,250 s, beyond a dispatch invocation's time
    with pytest.raises(ConfigurationError, match="lower the pages per run"):
        settings_module.load({"MAILPIPE_CAMPAIGN_SEND_RATE_PER_S": "20"})
    assert (
        settings_module.load(
            {"MAILPIPE_CAMPAIGN_SEND_RATE_PER_S": "20", "MAILPIPE_CAMPAIGN_PAGES_PER_RUN": "10"}
        ).campaign_pages_per_run
        == 10
    )
