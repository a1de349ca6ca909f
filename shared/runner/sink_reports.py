"""The SMTP sink's delivery reports: each accepted message is reported as `delivered` the way an
ESP's webhook reports it, so local campaigns have delivery, open and click rates.

An ESP posts signed batches of events to `/webhooks/<esp>`; the sink does the same with
Mailpipe's own signed format (`/webhooks/local`, shared/adapters/esp/local_webhook.py), so a
report takes the production path: signature check, the esp-feedback topic, the feedback
function, the warehouse. Correlation is the Message-ID, as SES's (SMTP carries no custom
arguments): the dashboards attribute a feedback event to its campaign through the `send` event
of the same message.

Nothing accepted goes unreported: the sink appends one JSON line per accepted message to a
journal before it answers 250 (a write into the page cache, like the Maildir file), and a
thread posts what the journal holds beyond its offset, advancing the offset only once the
webhook answered. A report posted twice (a crash between the post and the offset) has the same
provider event id, which the warehouse keeps once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.adapters.esp.local_webhook import sign

log = logging.getLogger("mailpipe.sink")

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<?([^<>\s]+)>?", re.IGNORECASE | re.MULTILINE)
POST_BATCH = 500  # events per webhook request (the webhook takes up to 1 MB)
COMPACT_AT_BYTES = 1 << 20  # a fully reported journal larger than this starts again empty


def message_id_of(content: bytes) -> str | None:
    """The Message-ID in the header section of a raw message, without angle brackets."""
    end = content.find(b"\r\n\r\n")
    found = _MESSAGE_ID.search(content, 0, end if end >= 0 else len(content))
    return found.group(1).decode("ascii", "replace") if found else None


class DeliveryReports:
    """Journal of accepted messages (`accepted`) and the thread that reports them."""

    def __init__(
        self,
        folder: Path,
        webhook_url: Callable[[], str],
        signing_key: str,
        interval_s: float = 0.5,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._journal = folder / "delivered.jsonl"
        self._offset = folder / "delivered.offset"
        self._url = webhook_url
        self._key = signing_key
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._file = open(self._journal, "ab")  # noqa: SIM115 - open for the sink's lifetime
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the sink's side -------------------------------------------------------------------
    def accepted(self, content: bytes, recipients: list[str], at: float) -> None:
        """Journal one accepted message (one line per recipient): called before the 250."""
        message_id = message_id_of(content)
        lines = [
            json.dumps({"message_id": message_id, "email": rcpt, "at": at}).encode() + b"\n"
            for rcpt in recipients
        ]
        with self._lock:
            self._file.write(b"".join(lines))
            self._file.flush()

    # --- the reporting thread ----------------------------------------------------------------
    def start(self) -> DeliveryReports:
        self._thread = threading.Thread(target=self._run, name="sink-reports", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Report what is left (once), then stop; anything unreported waits for the next run."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.flush()
        with self._lock:
            self._file.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.flush()
            except Exception:  # keep reporting; the journal keeps what was not reported
                log.exception("could not report sink deliveries; will retry")

    def flush(self) -> int:
        """Post every journalled report beyond the offset; returns how many were posted."""
        posted = 0
        offset = self._read_offset()
        with open(self._journal, "rb") as journal:
            journal.seek(offset)
            pending = journal.read()
        complete = pending[: pending.rfind(b"\n") + 1]  # a half-written last line waits
        lines = complete.splitlines(keepends=True)
        for start in range(0, len(lines), POST_BATCH):
            chunk = lines[start : start + POST_BATCH]
            if not self._post([json.loads(line) for line in chunk]):
                break
            offset += sum(len(line) for line in chunk)
            self._write_offset(offset)
            posted += len(chunk)
        self._compact(offset)
        return posted

    def _post(self, reports: list[dict[str, Any]]) -> bool:
        url = self._url()
        if not url:  # nowhere to report yet
            return False
        body = json.dumps([_event(r) for r in reports]).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            url,
            body,
            {
                "Content-Type": "application/json",
                "X-Mailpipe-Timestamp": timestamp,
                "X-Mailpipe-Signature": sign(self._key, timestamp, body),
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return 200 <= response.status < 300
        except urllib.error.HTTPError as exc:
            if exc.code == 400:  # never accepted however often it is posted: skip it
                log.error("sink delivery reports refused: %s", exc.read()[:200])
                return True
            log.warning("sink delivery reports not taken (HTTP %d); will retry", exc.code)
        except OSError as exc:  # the runner's HTTP server not up yet, or gone
            log.debug("sink delivery reports: %s; will retry", exc)
        return False

    def _read_offset(self) -> int:
        try:
            return int(self._offset.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def _write_offset(self, offset: int) -> None:
        partial = self._offset.with_name(self._offset.name + ".tmp")
        partial.write_text(str(offset))
        os.replace(partial, self._offset)

    def _compact(self, offset: int) -> None:
        """Start the journal again once everything in it was reported and it has grown."""
        if offset < COMPACT_AT_BYTES:
            return
        with self._lock:
            if self._journal.stat().st_size == offset:
                self._file.truncate(0)
                self._write_offset(0)


def _event(report: dict[str, Any]) -> dict[str, Any]:
    """A report as a normalized feedback event (LocalWebhook's body)."""
    message_id = report.get("message_id")
    return {
        "provider_event_id": f"sink-delivered:{message_id or report['at']}:{report['email']}",
        "kind": "delivered",
        "email": report["email"],
        "occurred_at": report["at"],
        "message_id": message_id,
        "smtp_code": "250",
        "detail": "accepted by the local SMTP sink",
    }
