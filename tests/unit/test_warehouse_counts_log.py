"""The warehouse logs, per stored batch, one line per event type with its count: the fields the
log-based metric of terraform/monitoring.tf extracts for the bounce and complaint rate alerts."""

from __future__ import annotations

import json
import logging

import pytest

from shared import logs
from shared.bootstrap import Container
from shared.domain.events import AnalyticsEvent


def test_each_batch_logs_its_count_per_event_type(container: Container, caplog) -> None:
    batch = [AnalyticsEvent(f"e{n}", kind, "2026-12-01T10:00:00Z", subscriber_id=f"s{n}")
             for n, kind in enumerate(["send", "send", "send", "bounce", "complaint"])]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="mailpipe.warehouse"):
        assert container.warehousing.handle(batch) == 5
    lines = [json.loads(logs.CloudLoggingFormatter().format(r)) for r in caplog.records
             if r.name == "mailpipe.warehouse"]  # fmt: skip
    counts = {line["event_type"]: line["event_count"] for line in lines}
    assert counts == {"send": 3, "bounce": 1, "complaint": 1}
    assert all(line["severity"] == "INFO" for line in lines)


def test_a_refused_batch_logs_no_counts(container: Container, caplog) -> None:
    from shared.domain.errors import PermanentFailure

    with (
        caplog.at_level(logging.INFO, logger="mailpipe.warehouse"),
        pytest.raises(PermanentFailure),
    ):
        container.warehousing.handle([AnalyticsEvent("e1", "nope", "2026-12-01T10:00:00Z")])
    assert not [r for r in caplog.records if r.name == "mailpipe.warehouse"]
