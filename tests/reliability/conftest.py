"""Fixtures of the campaign reliability tests: a local container with small audience pages, a
recording mailer and a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from campaign_support import installed
from support import FakeClock, RecordingMailer

from shared.bootstrap import Container
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
    yield from installed(local_settings, mailer, clock)
