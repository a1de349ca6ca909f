"""Item 6 of the walking skeleton, end to end over real HTTP and real SMTP: the local runner
(every function, the durable bus, the SMTP sink) in this process, driven like a person would."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from email.message import EmailMessage
from typing import Any

import pytest

from shared import topology
from shared.bootstrap import Container
from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.domain.subscriber import CONFIRMED, UNSUBSCRIBED
from shared.metering import OperationMeter
from shared.runner.local_runner import LocalRunner

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def mails(runner: LocalRunner) -> list[EmailMessage]:
    box = mailbox.Maildir(str(runner.maildir), create=True)
    keys = list(box.iterkeys())
    parsed = [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default) for k in keys]
    return sorted(parsed, key=lambda m: str(m["Date"]))  # type: ignore[misc]


def mail_with_subject(runner: LocalRunner, needle: str) -> EmailMessage | None:
    return next((m for m in mails(runner) if needle in str(m["Subject"])), None)


@pytest.fixture
def runner(local_settings):
    runner = LocalRunner(Container(local_settings, meter=OperationMeter())).start()
    yield runner
    runner.stop()


def test_signup_confirm_welcome_unsubscribe_suppress(runner):
    base = f"http://127.0.0.1:{runner.http_port}"
    body = json.dumps({"email": "Ann@Example.com", "first_name": "Ann"}).encode()
    status, answer, _ = http("POST", f"{base}/signup", body, {"Content-Type": "application/json"})
    assert status == 202, answer

    confirmation = wait_for(lambda: mail_with_subject(runner, "confirm"), what="confirmation")
    text = confirmation.get_body(("plain",)).get_content()
    link = re.search(r"<(http://[^>]+/confirm/\?token=[^>]+)>", text).group(1)
    status, page, _ = http("GET", link, headers={"Accept": "text/html"})
    assert status == 200 and b"confirmed" in page

    welcome = wait_for(lambda: mail_with_subject(runner, "Welcome, Ann"), what="welcome mail")
    assert welcome.get_body(("html",)) is not None and welcome.get_body(("plain",)) is not None
    unsubscribe_url = welcome["List-Unsubscribe"].strip("<>")
    assert unsubscribe_url.startswith("http://")
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    container = runner.container
    subscriber_id = container.subscribers.id_for("Ann@example.com")
    assert container.subscribers.get(subscriber_id).status == CONFIRMED
    wanted = {"signup", "confirm", "send"}
    wait_for(lambda: wanted <= event_types(container, subscriber_id), what="warehouse events")

    # RFC 8058: the mail client POSTs the header's URL with this exact body.
    status, _, _ = http(
        "POST",
        unsubscribe_url,
        b"List-Unsubscribe=One-Click",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    assert container.subscribers.get(subscriber_id).status == UNSUBSCRIBED

    # Later marketing mail to this subscriber, from an audience read before the unsubscribe,
    # is suppressed at send time.
    sent_before = len(mails(runner))
    later = RenderRequest(
        batch_id="later-newsletter",
        template="welcome",
        kind=MARKETING,
        audience_at=time.time() - 60,
        recipients=[Recipient(subscriber_id, "Ann@example.com", "Ann")],
        campaign_id="later",
    )
    container.outbox.publish_json(topology.RENDER_REQUESTS, [asdict(later)])
    wait_for(lambda: "suppressed" in event_types(container, subscriber_id), what="suppression")
    assert len(mails(runner)) == sent_before
    ledger = container.ledger.get("later-newsletter")
    assert ledger is not None and ledger.outcomes == {subscriber_id: "suppressed"}


def event_types(container: Container, subscriber_id: str) -> set[str]:
    rows = container.warehouse.query(
        "SELECT DISTINCT event_type FROM events WHERE subscriber_id = $s", {"s": subscriber_id}
    )
    return {r["event_type"] for r in rows}


def test_health_inbox_and_signup_page_are_served(runner):
    base = f"http://127.0.0.1:{runner.http_port}"
    status, body, _ = http("GET", f"{base}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body, _ = http("GET", f"{base}/signup", headers={"Accept": "text/html"})
    assert status == 200 and b"<form" in body
    status, body, _ = http("GET", f"{base}/inbox")
    assert status == 200 and b"Inbox" in body
    status, _, _ = http("GET", f"{base}/t/c/{urllib.parse.quote('forged.token')}")
    assert status == 404
