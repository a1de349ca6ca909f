"""Fixtures of the campaign reliability tests: a local container with small audience pages, a
recording mailer and a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from support import FakeClock, RecordingMailer

from shared import bootstrap
from shared.bootstrap import Container
from shared.metering import OperationMeter
from shared.settings import Settings


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def local(
    local_settings: Settings, mailer: RecordingMailer, clock: FakeClock
) -> Iterator[Container]:
    settings = replace(local_settings, campaign_page_size=100, campaign_pages_per_run=2,
                       campaign_gate_ttl_s=0.0)  # fmt: skip
    container = Container(settings, meter=OperationMeter(), clock=clock,
                          overrides={"mailer": mailer})  # fmt: skip
    bootstrap.install(container)
    yield container
    bootstrap.install(None)
