"""A campaign end to end on the real local runner: admin API over HTTP, the scheduler thread,
the bus workers, the functions, and real SMTP into the runner's sink; and the CLI's
`send --wait`, which runs the pipeline itself when no `make run` is up."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from support import REPO, free_port

from shared.bootstrap import Container
from shared.domain.ab_test import AbTest
from shared.runner.local_runner import LocalRunner

pytestmark = pytest.mark.slow
KEY = "test-admin-key"


def audience_csv(count: int) -> str:
    rows = ["email,first_name,lists,attributes.city"]
    rows += [f"reader{i}@example.com,Reader{i},weekly,{'Paris' if i % 2 else 'Oslo'}"
             for i in range(count)]  # fmt: skip
    return "\n".join(rows) + "\n"


class Admin:
    def __init__(self, base: str) -> None:
        self.base = base

    def __call__(self, method: str, path: str, body: object = None, content_type: str = "") -> dict:
        data = None
        headers = {"Authorization": f"Bearer {KEY}"}
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            headers["Content-Type"] = content_type or "application/json"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()!r}") from exc


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def messages(maildir: Path) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(str(maildir), factory=None)
    return [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in box]


@pytest.fixture
def runner(local_settings):
    settings = replace(local_settings, scheduler_interval_s=0.3, campaign_page_size=50,
                       campaign_pages_per_run=2, bus_max_attempts=10)  # fmt: skip
    running = LocalRunner(Container(settings)).start()
    yield running
    running.stop()


def test_a_scheduled_ab_campaign_runs_through_the_local_runner(runner):
    admin = Admin(f"http://{runner.settings.host}:{runner.http_port}/admin")
    imported = admin("POST", "/subscribers/import?confirmed_consent=true&filename=e2e.csv",
                     audience_csv(400), "text/csv")  # fmt: skip
    assert imported["created"] == 400
    ab = {
        "variants": [{"name": "A"}, {"name": "B", "subject": "B: spring news"}],
        "test_fraction": 0.5,
        "holdout_fraction": 0.1,
        "window_hours": 0.0005,
        "min_sample": 5,
    }
    created = admin(
        "POST",
        "/campaigns",
        {
            "name": "E2E",
            "template": "newsletter",
            "ab": ab,
            "segment": {"attribute": "city", "value": "Paris"},
        },
    )
    campaign_id = created["id"]
    assert admin("POST", f"/campaigns/{campaign_id}/preview")["ok"] is True
    admin("POST", f"/campaigns/{campaign_id}/test", {"to": "me@example.com", "variant": "B"})
    scheduled = admin("POST", f"/campaigns/{campaign_id}/schedule", {"at": time.time() + 1})
    assert scheduled["status"] == "scheduled"

    wait_for(lambda: admin("GET", f"/campaigns/{campaign_id}")["status"] == "sent", 120, "sent")
    shown = admin("GET", f"/campaigns/{campaign_id}")
    wait_for(lambda: admin("GET", f"/campaigns/{campaign_id}")["delivery"]["open"] == 0, 60,
             "every batch delivered")  # fmt: skip
    shown = admin("GET", f"/campaigns/{campaign_id}")
    assert shown["decision"]["source"] == "rule"
    assert "no significant difference" in shown["decision"]["reason"]

    ids_by_address = {f"reader{i}@example.com": i for i in range(400)}
    plan = AbTest.from_spec(shown["ab"])
    container = runner.container
    expected = set()
    for address, i in ids_by_address.items():
        cohort = plan.assign(campaign_id, container.subscribers.id_for(address)).cohort
        if i % 2 and cohort != "holdout":
            expected.add(address)
    wait_for(lambda: len(messages(runner.maildir)) >= len(expected) + 1, 30, "all mail stored")
    # "No open batch" can hold between the phases (remainder batches not yet claimed): read the
    # delivery figures once every send has been recorded.
    wait_for(lambda: sent_count(admin, campaign_id) >= len(expected), 30, "sends recorded")
    shown = admin("GET", f"/campaigns/{campaign_id}")
    received = Counter(str(m["To"]) for m in messages(runner.maildir))
    tests = [m for m in messages(runner.maildir) if str(m["Subject"]).startswith("[TEST]")]
    assert [str(m["Subject"]) for m in tests] == ["[TEST] B: spring news"]
    del received["me@example.com"]
    assert set(received) == expected and set(received.values()) == {1}
    assert shown["delivery"]["outcomes"]["sent"] == len(expected)
    assert shown["delivery"]["outcomes"]["holdout"] == sum(
        1 for a, i in ids_by_address.items() if i % 2
        and plan.assign(campaign_id, container.subscribers.id_for(a)).cohort == "holdout"
    )  # fmt: skip
    one = next(m for m in messages(runner.maildir) if str(m["To"]) in expected)
    assert one["List-Unsubscribe"] and one["Message-ID"]


def test_cli_send_wait_runs_the_pipeline_itself_when_nothing_else_does(tmp_path):
    env = {**os.environ, "MAILPIPE_DATA_DIR": str(tmp_path / "var"),
           "MAILPIPE_TEMPLATE_ROOT": str(REPO / "templates"), "PORT": str(free_port()),
           "SMTP_PORT": str(free_port()), "MAILPIPE_SCHEDULER_INTERVAL_S": "3600",
           "COLUMNS": "200"}  # fmt: skip
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(audience_csv(60))

    def mailpipe(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shared.cli.main", *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=180)  # fmt: skip

    assert mailpipe("subscribers", "import", str(csv_file), "--confirmed-consent").returncode == 0
    created = mailpipe("campaign", "create", "--name", "CLI", "--template", "newsletter",
                       "--segment", '{"list": "weekly"}', "--id", "cli")  # fmt: skip
    assert created.returncode == 0, created.stderr
    sent = mailpipe("campaign", "send", "cli", "--wait", "--timeout", "120")
    assert sent.returncode == 0, sent.stderr
    assert "running the pipeline here" in sent.stdout
    assert "delivery: 2/2 batches done" in sent.stdout and "60 sent" in sent.stdout
    assert len(messages(tmp_path / "var" / "mail")) == 60
    again = mailpipe("campaign", "send", "cli")
    assert again.returncode == 1 and "cannot send campaign 'cli': it is sent" in again.stderr


def sent_count(admin, campaign_id: str) -> int:
    return admin("GET", f"/campaigns/{campaign_id}")["delivery"]["outcomes"].get("sent", 0)
