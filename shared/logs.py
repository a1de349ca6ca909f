"""Structured logs in Cloud Logging's JSON shape, or plain text for a person at a terminal.

Each JSON line has `severity`, `message`, `time` and `logger`, the fields passed with `extra=`
(event, campaign and message ids, stage ...), the ids of `log_context()` around it, and the
trace as `logging.googleapis.com/trace` so Cloud Logging groups a request's lines.

Logs hold no more personal data than needed: anything shaped like an email address is replaced
by "[email]" wherever it appears (message, fields, exception text), and fields that name a
person (`email`, `recipient`, `ip`, `user_agent` ...) are dropped to "[redacted]". Ids (keyed
hashes) identify a subscriber for debugging without revealing who it is.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName",
}  # fmt: skip
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
PERSONAL_FIELDS = frozenset({
    "email", "address", "recipient", "recipients", "to", "from_address", "ip", "ip_address",
    "user_agent", "first_name", "last_name", "name", "phone",
})  # fmt: skip
TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("log_context")


def redact(value: Any) -> Any:
    """`value` with email addresses replaced, recursively through lists and dicts."""
    if isinstance(value, str):
        return EMAIL.sub("[email]", value)
    if isinstance(value, Mapping):
        return {k: "[redacted]" if k in PERSONAL_FIELDS else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact(v) for v in value]
    return value


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Adds `fields` (event_id, campaign_id, trace ...) to every line logged inside."""
    token = _context.set({**_context.get({}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def trace_from_header(header: str, project: str) -> dict[str, str]:
    """The trace fields for a request's `X-Cloud-Trace-Context` (TRACE/SPAN;o=1) or W3C
    `traceparent` (00-TRACE-SPAN-01) header; empty when there is none."""
    parts = header.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        trace, span = parts[1], parts[2]
    else:
        trace, _, rest = header.partition("/")
        span = rest.split(";")[0]
    if not trace:
        return {}
    fields = {"trace": f"projects/{project}/traces/{trace}" if project else trace}
    return {**fields, "span_id": span} if span else fields


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    return redact({**_context.get({}), **extra})


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per line, as Cloud Logging parses it from stdout/stderr."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": redact(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        fields = _fields(record)
        if trace := fields.pop("trace", None):
            entry[TRACE_KEY] = trace
        if span := fields.pop("span_id", None):
            entry[SPAN_KEY] = span
        entry.update(fields)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class HumanFormatter(logging.Formatter):
    """One line per record, with the structured fields appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        return line + "".join(f" {k}={v}" for k, v in _fields(record).items())


def configure_logging(level: str = "INFO", human: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if human:
        handler.setFormatter(HumanFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    else:
        handler.setFormatter(CloudLoggingFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("werkzeug", "mail.log", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
