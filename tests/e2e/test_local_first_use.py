"""What a first user of `make run` and the CLI meets (issue 15): local delivery reports and
rates, the CLI agreeing with the runner on links and data directory, `--wait` beside a busy
runner, and `make run` sending through a real SMTP server instead of its sink."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from campaign_support import add_audience
from support import REPO, free_port

from shared.bootstrap import Container
from shared.runner.local_runner import LocalRunner
from shared.settings import Settings

pytestmark = pytest.mark.slow


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def maildir_messages(maildir: Path) -> list[email.message.EmailMessage]:
    if not maildir.exists():
        return []
    box = mailbox.Maildir(str(maildir), factory=None)
    return [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in box]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a person's shell: the data directory, and no PORT or public URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILPIPE_")}
    env.pop("PORT", None)
    env.pop("SMTP_PORT", None)
    return {**env, "MAILPIPE_DATA_DIR": str(settings.data_dir), "COLUMNS": "200", **extra}


def mailpipe(env: dict[str, str], *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shared.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


@pytest.fixture
def runner(local_settings: Settings):
    settings = replace(local_settings, scheduler_interval_s=0.3, bus_max_attempts=10)
    running = LocalRunner(Container(settings)).start()
    yield running
    running.stop()


# --- item 2: the sink's acceptance is reported as delivery ---------------------------------------


def test_sink_acceptance_is_reported_as_delivered_so_local_rates_show(runner: LocalRunner):
    c = runner.container
    add_audience(c, 12)
    c.campaign_service.create({"id": "rates", "name": "Rates", "template": "newsletter"})
    c.campaign_service.send_now("rates")
    wait_for(lambda: len(maildir_messages(runner.maildir)) == 12, 60, "12 mails in the sink")
    summary = wait_for(
        lambda: (s := c.dashboards.campaign("rates")).delivered == 12 and s, 60, "delivered"
    )
    assert summary.sent == 12 and summary.delivery_rate == 1.0
    # A person opens one mail: the open rate is a rate now, not "—".
    pixel = re.search(r'src="(http://[^"]+/t/o/[^"]+)"', _html(maildir_messages(runner.maildir)[0]))
    assert pixel, "no open pixel"
    request = urllib.request.Request(pixel.group(1), headers={"User-Agent": "Mozilla/5.0 Firefox"})
    urllib.request.urlopen(request, timeout=10).read()
    summary = wait_for(
        lambda: (s := c.dashboards.campaign("rates")).unique_opens == 1 and s, 60, "the open"
    )
    assert summary.open_rate == pytest.approx(1 / 12)
    # Idempotent: the whole journal reported again changes no figure.
    reports = runner.sink.reports
    (runner.settings.data_dir / "sink" / "delivered.offset").write_text("0")
    assert reports.flush() == 12
    time.sleep(3)  # the feedback and warehouse functions have processed the repeats by now
    wait_for(lambda: c.bus.depths()["feedback-on-esp-feedback"]["ready"] == 0, 30, "feedback")
    assert c.dashboards.campaign("rates").delivered == 12
    # `campaign show` prints the rates from the same figures.
    shown = mailpipe(cli_env(runner.settings), "campaign", "show", "rates")
    assert shown.returncode == 0, shown.stderr
    assert "12 sent, 12 delivered" in shown.stdout and "open rate 8.3%" in shown.stdout


def _html(message: email.message.EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content()


# --- item 3: the CLI's links point where the runner serves ----------------------------------------


def test_campaign_test_links_point_at_the_runner_port(runner: LocalRunner):
    c = runner.container
    add_audience(c, 1)
    c.campaign_service.create({"id": "links", "name": "Links", "template": "newsletter"})
    assert runner.settings.port != 8080
    tested = mailpipe(
        cli_env(runner.settings), "campaign", "test", "links", "--to", "me@example.com"
    )
    assert tested.returncode == 0, tested.stderr
    mails = wait_for(lambda: maildir_messages(runner.maildir), 60, "the test mail")
    links = re.findall(r'href="(http://[^"/]+)/', _html(mails[0]))
    assert links and set(links) == {f"http://127.0.0.1:{runner.http_port}"}, set(links)
    info = json.loads((runner.settings.data_dir / "runner.json").read_text())
    assert info["port"] == runner.http_port and info["pid"] == os.getpid()


# --- item 6: --wait beside a busy runner ----------------------------------------------------------


def test_send_wait_follows_a_busy_runner_instead_of_starting_another(local_settings: Settings):
    # A slow provider rate keeps send batches waiting (not only leased) for several seconds: the
    # send worker takes 10 at a time, and 40 are queued.
    # The sweep each second: a campaign started right after subscribers were added may wait for
    # their subscriber-mirror rows (held for 15 s), and the sweep restarts it.
    settings = replace(local_settings, esp_rate_per_s=40.0, campaign_batch_size=10,
                       scheduler_interval_s=1.0)  # fmt: skip
    running = LocalRunner(Container(settings)).start()
    try:
        c = running.container
        add_audience(c, 400)
        add_audience(c, 1, start=1000, make=lambda i: {"lists": ["vip"]})
        c.campaign_service.create({"id": "big", "name": "Big", "template": "newsletter"})
        c.campaign_service.create({"id": "small", "name": "Small", "template": "newsletter",
                                   "segment": {"list": "vip"}})  # fmt: skip
        c.campaign_service.send_now("big")
        wait_for(lambda: c.bus.depths()["send-on-send-requests"]["ready"] > 20, 30, "a backlog")
        # The same shell as `make run`'s: the same ports.
        env = cli_env(settings, PORT=str(settings.port), SMTP_PORT=str(settings.smtp_port))
        sent = mailpipe(env, "campaign", "send", "small", "--wait", "--timeout", "120")
        assert sent.returncode == 0, sent.stderr
        assert "running the pipeline here" not in sent.stdout
        assert "`make run` is processing the bus: following its progress" in sent.stdout
        assert "address already in use" not in sent.stdout + sent.stderr
        assert "1 sent" in sent.stdout
    finally:
        running.stop()


def test_send_wait_that_runs_out_of_time_says_so_and_fails(local_settings: Settings):
    """`send --wait --timeout` that ends before the campaign does exits non-zero and says the
    campaign goes on: a script's `send --wait && next` must not go on as if it were sent."""
    running = LocalRunner(Container(local_settings)).start()
    try:
        c = running.container
        add_audience(c, 3)
        c.campaign_service.create({"id": "late", "name": "Late", "template": "newsletter"})
        env = cli_env(local_settings, PORT=str(local_settings.port),
                      SMTP_PORT=str(local_settings.smtp_port))  # fmt: skip
        sent = mailpipe(env, "campaign", "send", "late", "--wait", "--timeout", "0")
        assert sent.returncode == 1, sent.stdout
        assert "campaign late is still sending after --timeout 0 s; it goes on" in " ".join(
            sent.stderr.split()
        )
        assert "Traceback" not in sent.stdout + sent.stderr
    finally:
        running.stop()


# --- item 7: make run through a real SMTP server -----------------------------------------------


class Recorder:
    """A plain aiosmtpd server's handler that keeps every envelope (a stand-in for postfix)."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued"


@pytest.fixture
def real_server():
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, recorder
    controller.stop()


@pytest.mark.parametrize("how", ["sink off", "another host"])
def test_make_run_sends_through_a_real_smtp_server(local_settings, real_server, how):
    port, recorder = real_server
    if how == "sink off":  # the server is on the sink's own address: the sink must stay away
        settings = replace(local_settings, smtp_port=port, smtp_sink="off")
    else:  # a server named by another host name than the sink's 127.0.0.1
        settings = replace(local_settings, smtp_host="localhost", smtp_port=port)
    running = LocalRunner(Container(settings)).start()
    try:
        assert running.sink is None
        assert f"SMTP server    {settings.smtp_host}:{port}" in running.banner()
        body = json.dumps({"email": "ann@example.com", "first_name": "Ann"}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{running.http_port}/signup", body,
                                         {"Content-Type": "application/json"})  # fmt: skip
        assert urllib.request.urlopen(request, timeout=10).status == 202
        wait_for(lambda: recorder.envelopes, 60, "the confirmation mail at the real server")
        _sender, recipients, content = recorder.envelopes[0]
        assert recipients == ["ann@example.com"] and b"Subject:" in content
        assert not maildir_messages(running.maildir)  # nothing went into the sink's Maildir
    finally:
        running.stop()


def test_the_sink_setting_is_checked():
    with pytest.raises(Exception, match="MAILPIPE_SMTP_SINK must be on, off or auto"):
        Settings(smtp_sink="maybe").validate()


# --- item 9: the CLI's data directory ---------------------------------------------------------


def test_the_cli_names_its_data_directory_and_refuses_a_missing_one(tmp_path: Path):
    missing = tmp_path / "typo"
    env = {**cli_env(Settings(data_dir=missing))}
    shown = mailpipe(env, "subscribers", "show", "ann@example.com")
    assert shown.returncode == 1
    assert f"the data directory {missing} does not exist" in shown.stderr
    assert not missing.exists()
    # Elsewhere, without MAILPIPE_DATA_DIR: the checkout's var, never ./var of that directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env.pop("MAILPIPE_DATA_DIR")
    listed = mailpipe(env, "campaign", "list", cwd=elsewhere)
    assert str(REPO / "var") in listed.stderr
    assert not (elsewhere / "var").exists()
    # import creates the directory it is given, and says so.
    people = tmp_path / "people.csv"
    people.write_text("email\nann@example.com\n")
    env["MAILPIPE_DATA_DIR"] = str(missing)
    imported = mailpipe(env, "subscribers", "import", str(people), "--confirmed-consent")
    assert imported.returncode == 0, imported.stderr
    assert f"Using data directory {missing}" in imported.stderr and missing.is_dir()
    shown = mailpipe(env, "subscribers", "show", "ann@example.com")
    assert shown.returncode == 0 and "ann@example.com" in shown.stdout


def test_a_second_runner_on_the_same_data_directory_is_refused(runner: LocalRunner):
    second = LocalRunner(Container(replace(runner.settings, port=free_port(),
                                           smtp_port=free_port())))  # fmt: skip
    with pytest.raises(Exception, match="another Mailpipe runner is using the data directory"):
        second.start()
