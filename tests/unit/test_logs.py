"""Logs are Cloud Logging JSON, carry ids and the trace, and never hold an email address."""

from __future__ import annotations

import json
import logging

import pytest

from shared.logs import (
    SPAN_KEY,
    TRACE_KEY,
    CloudLoggingFormatter,
    HumanFormatter,
    log_context,
    trace_from_header,
)


def record(message: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("cannot mail ann.smith@example.com")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    rec = logging.LogRecord("mailpipe.test", logging.WARNING, __file__, 1, message, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def as_json(rec: logging.LogRecord) -> dict:
    return json.loads(CloudLoggingFormatter().format(rec))


def test_a_line_has_cloud_loggings_shape_and_the_ids() -> None:
    entry = as_json(record("sent %d", 3, event_id="e-1", campaign_id="c-9"))
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "sent 3"
    assert entry["logger"] == "mailpipe.test"
    assert (entry["event_id"], entry["campaign_id"]) == ("e-1", "c-9")
    assert entry["time"].startswith("20")


def test_the_context_adds_ids_and_the_trace_to_every_line_inside_it() -> None:
    with log_context(event_id="e-2", **trace_from_header("abc123/77;o=1", "proj")):
        entry = as_json(record("inside"))
    assert entry["event_id"] == "e-2"
    assert entry[TRACE_KEY] == "projects/proj/traces/abc123"
    assert entry[SPAN_KEY] == "77"
    assert "event_id" not in as_json(record("outside"))


def test_w3c_traceparent_is_understood() -> None:
    fields = trace_from_header("00-" + "a" * 32 + "-00f067aa0ba902b7-01", "p")
    assert fields == {"trace": "projects/p/traces/" + "a" * 32, "span_id": "00f067aa0ba902b7"}
    assert trace_from_header("", "p") == {}


@pytest.mark.parametrize("formatter", [CloudLoggingFormatter(), HumanFormatter("%(message)s")])
def test_no_email_address_is_ever_logged(formatter: logging.Formatter) -> None:
    rec = record(
        "bounce for %s",
        "Bob.Jones+news@mail.example.org",
        exc=True,
        email="ann@example.com",
        detail={"to": ["x@example.net"], "note": "reply from carl@example.co.uk"},
        campaign_id="c-1",
    )
    line = formatter.format(rec)
    assert "@example" not in line and "Bob.Jones" not in line, line
    assert "[email]" in line and "c-1" in line


def test_personal_fields_are_redacted_not_dropped_silently() -> None:
    entry = as_json(record("signup", ip="203.0.113.9", user_agent="Mozilla", subscriber_id="s1"))
    assert entry["ip"] == "[redacted]" and entry["user_agent"] == "[redacted]"
    assert entry["subscriber_id"] == "s1"  # a keyed hash identifies without revealing
