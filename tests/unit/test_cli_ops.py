"""The operator's commands on a real local container: dlq, status, demo and report."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import topology
from shared.adapters.local.sqlite_bus import SqliteBus
from shared.bootstrap import Container
from shared.cli.main import main
from shared.domain.messages import MARKETING, ZSTD_JSON, SendBatch
from shared.ports import OutboundMessage, OutgoingEmail
from shared.topology import SEND_REQUESTS

WAREHOUSE_SUB = "warehouse-on-analytics-events"


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str,
        stdin: str = "") -> tuple[int, str]:  # fmt: skip
    """`mailpipe ARGS` as a shell would run it: exit code and everything printed."""
    import io

    monkeypatch.setattr(sys, "argv", ["mailpipe", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def dead(make_container: Callable[..., Container]) -> Container:
    """Three dead letters on the warehouse subscription (one attempt allowed)."""
    c = make_container(bus_max_attempts=1)
    c.bus.publish("analytics-events", [OutboundMessage(b'[{"n": %d}]' % n) for n in range(3)])
    for d in c.bus.pull(WAREHOUSE_SUB, 10):
        c.bus.nack(WAREHOUSE_SUB, d.message_id, f"boom {d.message_id}")
    assert c.bus.counts()[WAREHOUSE_SUB] == 3
    return c


def test_dlq_list_counts_every_subscription(dead: Container, monkeypatch, capsys) -> None:
    code, out = run(monkeypatch, capsys, "dlq", "list")
    assert code == 0
    assert re.search(rf"{WAREHOUSE_SUB}\s*│\s*3", out)
    assert "3 dead letters in all." in out


def test_dlq_list_and_show_one_subscription(dead: Container, monkeypatch, capsys) -> None:
    first = dead.bus.list(WAREHOUSE_SUB)[0]
    code, out = run(monkeypatch, capsys, "dlq", "list", WAREHOUSE_SUB)
    assert code == 0 and "3 dead letters" in out and f"boom {first.message_id}" in out
    code, out = run(monkeypatch, capsys, "dlq", "show", WAREHOUSE_SUB, "--id", first.message_id)
    assert code == 0 and '"n": 0' in out and f"last error:       boom {first.message_id}" in out


def test_dlq_warns_about_dead_letters_close_to_expiry(
    make_container: Callable[..., Container], monkeypatch, capsys
) -> None:
    """Hold subscriptions keep a dead letter DEAD_LETTER_RETENTION_S; list and show say which
    are about to go, counted from when each was dead-lettered (the local store's timestamps)."""
    now = [time.time() - topology.DEAD_LETTER_RETENTION_S + 6 * 3600]  # expire in 6 h
    bus = SqliteBus(make_container().settings.data_dir / "bus.sqlite3", clock=lambda: now[0],
                    retry_override=topology.RetryPolicy(0.01, 0.01, 1))  # fmt: skip
    c = make_container(overrides={"bus": bus})
    c.bus.publish("analytics-events", [OutboundMessage(b"[]") for _ in range(3)])
    for d in c.bus.pull(WAREHOUSE_SUB, 10):
        c.bus.nack(WAREHOUSE_SUB, d.message_id, "boom")
    now[0] = time.time() - 3600  # one more, dead-lettered an hour ago: 31 days left
    c.bus.publish("analytics-events", [OutboundMessage(b"[]")])
    for d in c.bus.pull(WAREHOUSE_SUB, 10):
        c.bus.nack(WAREHOUSE_SUB, d.message_id, "boom")
    warning = f"{WAREHOUSE_SUB}: 3 messages expire within 24 h"
    code, out = run(monkeypatch, capsys, "dlq", "list")
    assert code == 0 and "4 dead letters in all." in out and warning in out
    code, out = run(monkeypatch, capsys, "dlq", "list", WAREHOUSE_SUB)
    assert code == 0 and warning in out and "Expires at" in out
    code, out = run(monkeypatch, capsys, "dlq", "list", "--warn-within", "1")
    assert code == 0 and "expire within" not in out  # 6 h left: not within the hour
    oldest, *_, newest = c.bus.list(WAREHOUSE_SUB)
    code, out = run(monkeypatch, capsys, "dlq", "show", WAREHOUSE_SUB, "--id", oldest.message_id)
    assert "expires at:" in out and f"{WAREHOUSE_SUB}: 1 messages expire within 24 h" in out
    code, out = run(monkeypatch, capsys, "dlq", "show", WAREHOUSE_SUB, "--id", newest.message_id)
    assert code == 0 and "expire within" not in out


def test_dlq_show_reads_a_compressed_send_batch(make_container, monkeypatch, capsys) -> None:
    c = make_container(bus_max_attempts=1)
    raw = b"Subject: Spring\r\n\r\nHello"
    email = OutgoingEmail("m1@x", "a@example.com", "b@example.com", "Spring", "", "", {}, raw,
                          subscriber_id="s1", campaign_id="c1")  # fmt: skip
    batch = SendBatch("c1:all:000001", MARKETING, 1.8e9, [email], "c1")
    c.publisher.publish(SEND_REQUESTS, [OutboundMessage(batch.encode(), {"encoding": ZSTD_JSON})])
    send = topology.subscriptions_of(SEND_REQUESTS)[0].name
    (delivery,) = c.bus.pull(send, 10)
    c.bus.nack(send, delivery.message_id, "boom")

    code, out = run(monkeypatch, capsys, "dlq", "show", send, "--id", delivery.message_id)
    assert code == 0 and '"batch_id": "c1:all:000001"' in out and '"raw_length": 24' in out


def test_replay_requeues_once_and_purge_empties(dead: Container, monkeypatch, capsys) -> None:
    one = dead.bus.list(WAREHOUSE_SUB)[0].message_id
    assert run(monkeypatch, capsys, "dlq", "replay", WAREHOUSE_SUB, "--id", one)[1].startswith(
        f"Replayed 1 dead letters on {WAREHOUSE_SUB}; 2 left."
    )
    again = run(monkeypatch, capsys, "dlq", "replay", WAREHOUSE_SUB, "--id", one)[1]
    assert again.startswith(f"Replayed 0 dead letters on {WAREHOUSE_SUB}; 2 left.")
    assert [d.message_id for d in dead.bus.pull(WAREHOUSE_SUB, 10)] == [one]
    code, out = run(monkeypatch, capsys, "dlq", "purge", WAREHOUSE_SUB, stdin="n\n")
    assert code != 0 and dead.bus.counts()[WAREHOUSE_SUB] == 2  # said no: nothing purged
    code, out = run(monkeypatch, capsys, "dlq", "purge", WAREHOUSE_SUB, "--yes")
    assert code == 0 and "Purged 2 dead letters" in out and dead.bus.counts()[WAREHOUSE_SUB] == 0


def test_unknown_subscription_or_id_is_a_clear_error(dead: Container, monkeypatch, capsys) -> None:
    code, out = run(monkeypatch, capsys, "dlq", "list", "nope")
    assert code == 1 and "no subscription 'nope'; known:" in out and "Traceback" not in out
    code, out = run(monkeypatch, capsys, "dlq", "show", WAREHOUSE_SUB, "--id", "42")
    assert code == 1 and f"no dead letter 42 on {WAREHOUSE_SUB}" in out


def test_status_shows_queues_campaigns_send_rates_and_errors(
    dead: Container, monkeypatch, capsys
) -> None:
    dead.bus.publish("send-requests", [OutboundMessage(b"{}")])
    dead.documents.put(
        "campaigns", "c-live", {"id": "c-live", "name": "Live one", "status": "sending"}
    )
    dead.documents.put("campaigns", "c-old", {"id": "c-old", "name": "Old one", "status": "sent"})
    now = time.time()
    dead.warehouse.append([{"event_id": f"s{n}", "event_type": "send", "campaign_id": "c-live",
                            "occurred_at": _iso(now - 30)} for n in range(7)])  # fmt: skip
    code, out = run(monkeypatch, capsys, "status", "--minutes", "5")
    assert code == 0
    assert re.search(r"send-on-send-requests\s*│\s*1\s*│", out)  # one ready
    assert re.search(rf"{WAREHOUSE_SUB}(\s*│\s*\d+){{3}}\s*│\s*3", out)  # three dead letters
    assert "Live one" in out and "Old one" not in out
    assert "7 sent" in out
    assert "boom" in out


def _iso(ts: float) -> str:
    from shared.domain.events import utc_iso

    return utc_iso(ts)


def test_demo_fills_an_empty_dir_and_refuses_a_used_one(
    container: Container, monkeypatch, capsys
) -> None:
    code, out = run(monkeypatch, capsys, "demo")
    assert code == 0 and "2400 subscribers" in out
    campaigns = container.dashboards.campaigns()
    assert {c.campaign_id for c in campaigns} >= {"demo-summer-sale-ab", "demo-autumn-newsletter"}
    events = container.warehouse.query("SELECT count(*) AS n FROM events")[0]["n"]
    code, out = run(monkeypatch, capsys, "demo")
    assert code == 1 and "already holds data" in out and "--force" in out
    code, out = run(monkeypatch, capsys, "demo", "--force")
    assert code == 0
    assert container.warehouse.query("SELECT count(*) AS n FROM events")[0]["n"] >= events


def test_demo_gives_every_chart_something(container: Container, monkeypatch, capsys) -> None:
    assert run(monkeypatch, capsys, "demo")[0] == 0
    d = container.dashboards
    ab = d.ab_results("demo-summer-sale-ab")
    assert [v.variant for v in ab.variants] == ["A", "B"] and all(
        v.unique_clicks for v in ab.variants
    )
    assert ab.verdict.winner == "B" and ab.verdict.decided  # the campaign's own winner rule
    days = d.campaign_performance("demo-summer-sale-ab")
    assert len(days) >= 5 and sum(x.unique_opens for x in days[1:]) > 0  # opens over days
    summary = d.campaign("demo-summer-sale-ab")
    assert summary.hard_bounces and summary.soft_bounces and summary.complaints
    assert summary.machine_opens and summary.unique_opens and summary.unsubscribes
    assert {r.mailbox_provider for r in d.deliverability()} == {
        "gmail",
        "outlook",
        "yahoo",
        "icloud",
        "other",
    }
    growth = d.growth()
    assert (
        len(growth) > 40 and sum(g.unsubscribes for g in growth) and growth[-1].subscribers > 1000
    )
    assert len(d.link_clicks("demo-summer-sale-ab")) == 3


def test_report_prints_the_dashboard_figures(
    container: Container, monkeypatch, capsys, tmp_path: Path
) -> None:
    run(monkeypatch, capsys, "demo")
    summary = container.dashboards.campaign("demo-summer-sale-ab")
    code, out = run(monkeypatch, capsys, "report", "demo-summer-sale-ab")
    assert code == 0 and summary.name in out
    assert re.search(rf"Sent\s*│\s*{summary.sent:,}\s*│", out)
    assert re.search(rf"Click rate\s*│\s*{summary.click_rate * 100:.1f}%", out)
    assert "A/B test (95% confidence intervals)" in out
    target = tmp_path / "report.html"
    code, out = run(monkeypatch, capsys, "report", "demo-summer-sale-ab", "--html", str(target))
    html = target.read_text()
    assert code == 0 and "<svg" in html and f"{summary.sent:,}" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//|@import|url\((?!#)""", html), (
        "external request"
    )
    code, out = run(monkeypatch, capsys, "report", "nope")
    assert code == 1 and "no campaign 'nope'" in out
    code, out = run(
        monkeypatch,
        capsys,
        "report",
        "demo-summer-sale-ab",
        "--html",
        str(tmp_path / "no" / "x.html"),
    )
    assert code == 1 and "no such directory" in out and not (tmp_path / "no").exists()


def test_demo_campaigns_are_campaigns_the_engine_reads(make_container):
    """Every campaign document the demo writes loads as a Campaign (list/show/report work)."""
    import time

    from shared.cli.cmd_demo import write_demo
    from shared.domain.campaign import Campaign

    c = make_container()
    data = write_demo(c, time.time())
    loaded = [Campaign.from_doc(doc) for _, doc in c.documents.query("campaigns", limit=100)]
    assert len(loaded) == len(data.campaigns) and all(x.template for x in loaded)
