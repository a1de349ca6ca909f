"""Subscriber import on the real local store and bus: validation, consent, idempotent re-runs,
and the CLI around it (progress, rejects file, exit codes)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from shared import topology
from shared.domain.errors import InvalidInput
from shared.domain.messages import SIGNED_UP
from shared.domain.subscriber import CONFIRMED, PENDING, UNSUBSCRIBED, Subscriber
from shared.repositories import suppressions as reasons
from shared.services.subscriber_import import ImportOptions

SAMPLE = REPO / "tests" / "data" / "subscribers.csv"


def run_import(container, text: str, confirmed: bool = False, name: str = "list.csv"):
    options = ImportOptions(name, hashlib.sha256(text.encode()).hexdigest(), confirmed)
    return container.subscriber_import.run(io.StringIO(text, newline=""), options)


def stored(container, email: str) -> Subscriber:
    return container.subscribers.get(container.subscribers.id_for(email))


def signed_up_events(container) -> list[dict]:
    """The subscriber events published since the last call."""
    sub = topology.subscriptions_of(topology.SUBSCRIBER_EVENTS)[0].name
    deliveries = container.bus.pull(sub, 1000)
    for d in deliveries:
        container.bus.ack(sub, d.message_id)
    return [json.loads(d.data) for d in deliveries]


def test_the_sample_file_imports_with_reasons_for_every_rejected_row(container):
    summary = run_import(container, SAMPLE.read_text(), confirmed=True, name="subscribers.csv")

    assert (summary.rows, summary.created, summary.updated, summary.rejected) == (10, 6, 0, 3)
    assert summary.duplicates == 1  # ann twice: one subscriber, reported
    reasons_by_line = {r.line: r.reason for r in summary.rejects}
    assert "must have an @-sign" in reasons_by_line[6]
    assert reasons_by_line[7] == "the row has more fields than the header"
    assert "first_name contains characters that are not allowed" in reasons_by_line[9]
    ann = stored(container, "ann@example.com")
    assert ann.status == CONFIRMED and ann.confirmed_at
    assert ann.lists == ["weekly", "product-news", "events"]  # second row merged in
    assert ann.attributes == {"city": "Paris", "plan": "pro", "age": 35}
    consent = ann.consent[0]
    assert (consent["action"], consent["source"], consent["form_version"]) == (
        "import", "import", "subscribers.csv"
    )  # fmt: skip
    assert consent["text_hash"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert stored(container, "grace@example.com").attributes["age"] == "05"  # not a plain number
    assert stored(container, "chloé@example.com").tags == ["early-adopter"]
    assert signed_up_events(container) == []  # confirmed consent: no opt-in mail


def test_without_confirmed_consent_they_are_pending_and_get_the_opt_in_mail(container):
    text = "email,first_name\nann@example.com,Ann\nbob@example.org,Bob\n"
    summary = run_import(container, text)

    assert summary.created == 2 and summary.confirmations_requested == 2
    assert stored(container, "ann@example.com").status == PENDING
    events = signed_up_events(container)
    assert sorted(e["subscriber_id"] for e in events) == sorted(
        container.subscribers.id_for(a) for a in ("ann@example.com", "bob@example.org")
    )
    assert all(e["kind"] == SIGNED_UP for e in events)

    again = run_import(container, text)
    assert (again.created, again.unchanged) == (0, 2)
    # The same events again (same ids): the send ledger mails each confirmation once.
    assert sorted(e["event_id"] for e in signed_up_events(container)) == sorted(
        e["event_id"] for e in events
    )
    assert len(container.documents.query("subscribers", limit=10)) == 2


def test_re_import_updates_fields_without_duplicating(container):
    run_import(container, "email,first_name,tags\nann@example.com,Ann,vip\n", confirmed=True)
    summary = run_import(
        container, "email,first_name,tags,attributes.plan.tier\nANN@example.com,Annie,beta,gold\n"
    )
    ann = stored(container, "ann@example.com")
    assert summary.updated == 1 and summary.created == 0
    assert (ann.first_name, ann.tags, ann.attributes) == ("Annie", ["vip", "beta"],
                                                          {"plan": {"tier": "gold"}})  # fmt: skip
    assert ann.status == CONFIRMED
    assert len(container.documents.query("subscribers", limit=10)) == 1


def test_an_import_never_resubscribes_anyone(container):
    gone = Subscriber(id=container.subscribers.id_for("gone@example.com"),
                      email="gone@example.com", status=UNSUBSCRIBED)  # fmt: skip
    container.subscribers.create(gone)
    container.suppressions.add("bounced@example.com", reasons.HARD_BOUNCE, 1.0)
    summary = run_import(
        container, "email\ngone@example.com\nbounced@example.com\n", confirmed=True
    )
    assert stored(container, "gone@example.com").status == UNSUBSCRIBED
    assert summary.rejected == 1
    assert "address is suppressed (hard_bounce)" in summary.rejects[0].reason
    assert container.subscribers.find(container.subscribers.id_for("bounced@example.com")) is None


def test_confirmed_consent_confirms_a_pending_subscriber_with_a_consent_record(container):
    run_import(container, "email\nann@example.com\n")
    run_import(container, "email\nann@example.com\n", confirmed=True, name="second.csv")
    ann = stored(container, "ann@example.com")
    assert ann.status == CONFIRMED
    assert [c["form_version"] for c in ann.consent] == ["list.csv", "second.csv"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("first_name\nAnn\n", "no column holds the email address"),
        ("email,email\na@example.com,b@example.com\n", "email appear twice"),
    ],
)
def test_a_bad_header_stops_before_any_write(container, text, message):
    with pytest.raises(InvalidInput) as caught:
        run_import(container, text)
    assert message in str(caught.value)
    assert container.documents.query("subscribers", limit=10) == []


def test_bad_membership_names_are_rejected_per_row(container):
    summary = run_import(container, "email,lists\nann@example.com,weekly;<b>\n")
    assert summary.rejected == 1 and "lists has an invalid name '<b>'" in summary.rejects[0].reason


# -- the CLI -----------------------------------------------------------------------------------


def mailpipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MAILPIPE_DATA_DIR": str(tmp_path / "var"),
           "MAILPIPE_TEMPLATE_ROOT": str(REPO / "templates"), "COLUMNS": "200"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_cli_import_writes_rejects_and_is_safe_to_rerun(tmp_path):
    rejects = tmp_path / "rejected.csv"
    first = mailpipe(tmp_path, "subscribers", "import", str(SAMPLE), "--confirmed-consent",
                     "--rejects", str(rejects))  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "10 rows: 6 created, 0 updated, 0 unchanged, 3 rejected" in first.stdout
    assert "1 duplicate" in first.stdout
    lines = rejects.read_text().splitlines()
    assert lines[0].startswith("line,email,") and lines[0].endswith(",reason")
    assert len(lines) == 4 and lines[1].startswith("6,not-an-address,")

    second = mailpipe(tmp_path, "subscribers", "import", str(SAMPLE), "--confirmed-consent",
                      "--rejects", str(rejects))  # fmt: skip
    assert "0 created" in second.stdout
    listed = mailpipe(tmp_path, "subscribers", "list", "--limit", "100")
    assert listed.stdout.count("confirmed") == 6


def test_cli_import_of_a_bad_file_exits_non_zero_with_the_reason(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("address,name\nx@example.com,X\n")
    result = mailpipe(tmp_path, "subscribers", "import", str(bad))
    assert result.returncode == 1
    assert "no column holds the email address" in result.stderr
    assert "Traceback" not in result.stderr
