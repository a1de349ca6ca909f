"""The dashboard as a first user sees it (issue 15, item 10): charts and wording with little
data, the A/B view, drafts, the demo's triggers, and `campaign show` agreeing with the
dashboard. Screenshots at 1280 and 390 px land in var/screenshots/ for a human look."""

from __future__ import annotations

import io
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from browser_support import chromium, screenshot
from support import REPO, free_port

from shared import bootstrap
from shared.analytics.dashboards import CampaignDay
from shared.bootstrap import Container
from shared.cli.cmd_demo import write_demo
from shared.cli.main import main
from shared.dashboard import charts
from shared.dashboard import formatting as fmt
from shared.dashboard.app import create_dashboard_app
from shared.domain import events as ev
from shared.domain.events import AnalyticsEvent, utc_iso
from shared.runner.local_runner import LocalRunner
from shared.settings import Settings

SCREENSHOTS = REPO / "var" / "screenshots"
KEY = "test-admin-key"
AB = "demo-summer-sale-ab"


def tick_labels(svg: str) -> list[str]:
    """The x axis's tick labels of a chart (text kept as text: svg.fonttype none)."""
    axis = svg[svg.index('id="matplotlib.axis_1"') : svg.index('id="matplotlib.axis_2"')]
    return re.findall(r"<text[^>]*>([^<]+)</text>", axis)


def test_one_day_is_a_bar_on_a_week_of_days_not_hours() -> None:
    svg = charts.campaign_activity([CampaignDay("c", date(2026, 6, 3), 49, 49, 0, 0, 5, 0, 3)])
    labels = tick_labels(svg)
    assert len(labels) >= 6 and "03 Jun" in labels, labels
    assert not [label for label in labels if re.fullmatch(r"\d\d:\d\d", label)], labels


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["mailpipe", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr()
    out = capsys.readouterr()
    return out.out + out.err


def sends(container: Container, count: int) -> None:
    now = time.time()
    rows = []
    for n in range(count):
        common = {"subscriber_id": f"s{n}", "mailbox_provider": "gmail",
                  "message_id": f"m{n}@x", "campaign_id": "tiny"}  # fmt: skip
        rows.append(AnalyticsEvent(f"send{n}", ev.SEND, utc_iso(now), **common).to_row())
        rows.append(AnalyticsEvent(f"dlv{n}", ev.DELIVERED, utc_iso(now), **common).to_row())
    container.warehouse.append(rows)


def test_deliverability_with_two_sent_does_not_say_none_was_sent(container: Container) -> None:
    sends(container, 2)
    page = create_dashboard_app(lambda: container.dashboards).test_client().get("/deliverability")
    text = page.get_data(as_text=True)
    assert 'data-figure="sent">2<' in text
    assert "No mail sent in this period" not in text
    assert "No mail delivered in this period" not in text
    assert "Too little mail for a rate line" in text


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Container:
    """One demo data directory for this module's tests (writing it takes seconds)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("demo") / "var",
                        template_root=REPO / "templates", port=free_port(),
                        smtp_port=free_port(), admin_api_key=KEY)  # fmt: skip
    container = Container(settings)
    write_demo(container, time.time())
    return container


def test_the_ab_view_says_what_each_variant_was_and_agrees_with_its_verdict(demo) -> None:
    client = create_dashboard_app(lambda: demo.dashboards).test_client()
    page = client.get(f"/campaigns/{AB}").get_data(as_text=True)
    assert "“Our summer sale starts today”" in page and "“48 hours only: up to 40% off”" in page
    ab = demo.dashboards.ab_results(AB)
    winner = next(v for v in ab.variants if v.variant == ab.verdict.winner)
    verdict = re.search(r"wins: ([\d.]+)%", ab.verdict.explanation)
    assert verdict, ab.verdict.explanation
    assert float(verdict.group(1)) == pytest.approx(winner.click_rate * 100, abs=0.005)
    row = re.search(rf'data-variant="{winner.variant}".*?data-figure="click_rate">([^ <]+)', page,
                    re.S)  # fmt: skip
    assert row and row.group(1) == fmt.percent(winner.unique_clicks / winner.sent)


def test_campaign_show_says_where_its_figures_come_from(demo, monkeypatch, capsys) -> None:
    summary = demo.dashboards.campaign(AB)
    assert summary.sent > 1000
    bootstrap.install(demo)
    try:
        out = run_cli(monkeypatch, capsys, "campaign", "show", AB)
    finally:
        bootstrap.install(None)
    assert f"events: {summary.sent:,} sent" in out and "(warehouse, as on the dashboard)" in out
    assert "(send ledger)" in out


def test_drafts_of_one_name_are_told_apart(container: Container) -> None:
    service = container.campaign_service
    for n in range(2):
        service.create({"id": f"spring-{n}", "name": "Spring", "template": "newsletter"})
    page = create_dashboard_app(lambda: container.dashboards).test_client().get("/")
    text = page.get_data(as_text=True)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for n in range(2):
        assert re.search(rf"<code>spring-{n}</code> · created {today}", text), text


def test_the_demo_triggers_page_shows_sends_and_no_removed_trigger(demo) -> None:
    from shared.analytics import triggers_report

    rows = triggers_report.page_context(
        demo.warehouse, demo.dashboards.catalog, demo.trigger_catalog.current()
    )["rows"]
    assert rows and all(r.definition is not None for r in rows), [r.performance for r in rows]
    assert all(r.performance.sent > 0 for r in rows), [r.performance for r in rows]
    assert sum(r.performance.conversions for r in rows) > 0


@pytest.fixture
def running_demo(demo: Container) -> Iterator[tuple[str, Container]]:
    """`make run` on the demo data directory, without the SMTP sink."""
    runner = LocalRunner(Container(demo.settings), with_smtp_sink=False).start()
    yield f"http://127.0.0.1:{runner.http_port}/dashboard", runner.container
    runner.stop()


@pytest.mark.slow
@pytest.mark.xdist_group("browser")
def test_the_pages_in_a_browser(running_demo, tmp_path) -> None:
    """A draft's page shows its settings and rendered mail; screenshots of every page."""
    from selenium.webdriver.common.by import By

    base, _ = running_demo
    with chromium(tmp_path / "profile") as driver:
        driver.get(f"{base}/sign-in")  # the dashboards are behind the console's sign-in
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.ID, "sign-in").click()
        deadline = time.monotonic() + 30
        while "sign-in" in driver.current_url and time.monotonic() < deadline:
            time.sleep(0.1)
        driver.get(f"{base}/campaigns/demo-autumn-newsletter")
        assert "sign-in" not in driver.current_url, driver.page_source[:2000]
        settings = driver.find_element(By.ID, "settings-table").text
        assert "Template newsletter" in settings and "Subject Autumn picks" in settings
        assert not driver.find_elements(By.ID, "figures")  # no grid of zeros
        frame = driver.find_element(By.CSS_SELECTOR, "iframe.preview")
        driver.switch_to.frame(frame)
        assert "Ann" in driver.find_element(By.TAG_NAME, "body").text
        driver.switch_to.default_content()
        pages = {"draft": "campaigns/demo-autumn-newsletter", "index": "", "ab": f"campaigns/{AB}",
                 "deliverability": "deliverability", "growth": "growth",
                 "triggers": "triggers"}  # fmt: skip
        for name, path in pages.items():
            driver.get(f"{base}/{path}")
            assert "Something went wrong" not in driver.page_source
            for width in (1280, 390):
                screenshot(driver, SCREENSHOTS / f"dashboard-{name}-{width}.png", width)
