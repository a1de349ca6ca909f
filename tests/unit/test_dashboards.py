"""Dashboard figures over a real local container: campaigns from documents and events, A/B
intervals, readable formatting, error pages, and a warehouse snapshot that stays right while
parts arrive, get erased or compacted."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from shared.analytics.dashboards import Verdict
from shared.analytics.sql_catalog import SqlCatalog, Where
from shared.analytics.stats import wilson_interval
from shared.bootstrap import Container
from shared.dashboard import formatting as fmt
from shared.dashboard.app import create_dashboard_app
from shared.domain.errors import ConfigurationError, InvalidInput, NotFound

# Three days, weeks ago: inside the 90 days the dashboards read.
DAYS = [(datetime.now(UTC) - timedelta(days=12 - k)).date() for k in range(3)]


def event(n: int, kind: str, **fields: object) -> dict:
    base = {"event_id": f"{kind}-{n}", "event_type": kind, "subscriber_id": f"s{n}",
            "occurred_at": f"{DAYS[n % 3].isoformat()}T10:00:00.000Z", "campaign_id": "c1",
            "message_id": f"m{n}", "mailbox_provider": "gmail"}  # fmt: skip
    return base | fields


@pytest.fixture
def filled(container: Container) -> Container:
    """c1: 10 sent (5 per variant), 9 delivered, 1 hard bounce, 4 people opened (one by a
    machine only), 2 clicked; opens and clicks carry no campaign or variant of their own."""
    rows = [event(n, "send", variant="AB"[n % 2]) for n in range(10)]
    rows += [event(n, "delivered", campaign_id=None) for n in range(9)]
    rows += [event(9, "bounce", reason="hard")]
    rows += [event(n, "open", campaign_id=None, is_machine=False) for n in (0, 1, 2, 3)]
    rows += [event(4, "open", campaign_id=None, is_machine=True)]
    rows += [event(n, "click", is_machine=False, link_url="https://x.example/a") for n in (1, 3)]
    container.warehouse.append(rows)
    june = {
        "id": "c1",
        "name": "June",
        "status": "sent",
        "variants": [{"name": "A"}, {"name": "B"}],
    }
    container.documents.put("campaigns", "c1", june)
    container.documents.put("campaigns", "c2", {"id": "c2", "status": "draft", "variants": ["A"]})
    return container


def test_campaigns_come_from_documents_and_events(filled: Container) -> None:
    by_id = {c.campaign_id: c for c in filled.dashboards.campaigns()}
    assert set(by_id) == {"c1", "c2"}
    c1 = by_id["c1"]
    assert (c1.name, c1.status, c1.variants) == ("June", "sent", ("A", "B"))
    assert (c1.sent, c1.delivered, c1.bounces, c1.hard_bounces) == (10, 9, 1, 1)
    assert (c1.unique_opens, c1.machine_opens, c1.unique_clicks) == (4, 1, 2)
    assert c1.click_rate == 2 / 9 and c1.click_to_open_rate == 2 / 4
    assert (by_id["c2"].name, by_id["c2"].sent, by_id["c2"].click_rate) == ("c2", 0, None)


def test_an_unknown_campaign_is_not_found(filled: Container) -> None:
    with pytest.raises(NotFound, match="no campaign 'c9'"):
        filled.dashboards.campaign("c9")


def test_ab_results_attribute_engagement_to_the_variant_sent(filled: Container) -> None:
    ab = filled.dashboards.ab_results("c1")
    a, b = ab.variants
    assert (a.variant, a.sent, a.delivered, a.unique_opens, a.unique_clicks) == ("A", 5, 5, 2, 0)
    assert (b.variant, b.sent, b.delivered, b.unique_opens, b.unique_clicks) == ("B", 5, 4, 2, 2)
    assert b.click_rate_ci is not None and b.click_rate_ci.low < 0.5 < b.click_rate_ci.high
    assert ab.verdict == Verdict(
        None, False, "No winner rule is configured; compare the intervals."
    )


def test_a_wired_verdict_rule_gets_the_variants(filled: Container) -> None:
    seen = []

    def rule(variants):
        seen.append([v.variant for v in variants])
        return Verdict("B", True, "B wins.")

    filled.dashboards.verdict_rule = rule
    assert filled.dashboards.ab_results("c1").verdict.winner == "B" and seen == [["A", "B"]]


def test_links_and_days(filled: Container) -> None:
    (link,) = filled.dashboards.link_clicks("c1")
    assert (link.link_url, link.clicks, link.unique_clicks) == ("https://x.example/a", 2, 2)
    days = filled.dashboards.campaign_performance("c1")
    assert [d.day for d in days] == DAYS
    assert sum(d.sent for d in days) == 10


def test_wilson_interval_matches_the_textbook_values() -> None:
    interval = wilson_interval(81, 263)  # Wilson (1927) worked example style figures
    assert interval is not None
    assert math.isclose(interval.low, 0.2553, abs_tol=1e-4)
    assert math.isclose(interval.high, 0.3662, abs_tol=1e-4)
    zero = wilson_interval(0, 10)
    assert zero is not None and zero.low == 0.0 and 0.27 < zero.high < 0.28
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_formatting_reads_well() -> None:
    assert fmt.number(1234567) == "1,234,567" and fmt.number(None) == "—"
    assert fmt.percent(0.0423) == "4.2%" and fmt.percent(0.0015) == "0.15%"
    assert fmt.percent(0) == "0%" and fmt.percent(None) == "—"


def test_the_catalog_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ConfigurationError):
        SqlCatalog("duckdb").query("no_such_query")
    with pytest.raises(InvalidInput):
        Where("campaign_id; DROP", "=", "x")
    with pytest.raises(ConfigurationError):
        SqlCatalog("postgres")  # type: ignore[arg-type]


def test_the_app_answers_every_page_and_errors_in_words(filled: Container) -> None:
    client = create_dashboard_app(lambda: filled.dashboards).test_client()
    index = client.get("/").get_data(as_text=True)
    assert 'href="/campaigns/c1"' in index and "June" in index
    page = client.get("/campaigns/c1")
    assert page.status_code == 200 and "<svg" in page.get_data(as_text=True)
    assert client.get("/deliverability?days=90").status_code == 200
    beyond = client.get("/deliverability?days=91")  # the dashboard queries read 90 days
    assert beyond.status_code == 400 and "from 1 to 90" in beyond.get_data(as_text=True)
    assert client.get("/growth").status_code == 200
    missing = client.get("/campaigns/c9")
    assert missing.status_code == 404 and "no campaign" in missing.get_data(as_text=True)
    bad = client.get("/growth?days=-3")
    assert bad.status_code == 400 and "days must be a whole number" in bad.get_data(as_text=True)
    assert client.get("/nothing-here").status_code == 404


def test_snapshot_follows_new_erased_and_compacted_parts(
    make_container: Callable[..., Container],
) -> None:
    c = make_container()
    w = c.warehouse
    w.append([event(n, "send") for n in range(3)])
    assert c.dashboards.campaign("c1").sent == 3
    w.append([event(n, "send") for n in range(2, 6)])  # one redelivered, three new
    assert c.dashboards.campaign("c1").sent == 6
    assert w.erase_subscriber("s1") == 1
    assert w.query("SELECT count(*) AS n FROM events WHERE subscriber_id = 's1'")[0]["n"] == 0
    w.append([event(n, "send") for n in range(5, 7)])  # a landing part beside the Parquet one
    assert w.compact() == 2 and w.compact() == 0
    parts = list((c.settings.data_dir / "warehouse" / "events").iterdir())
    assert [p.suffix for p in parts if not p.name.startswith(".")] == [".parquet"]
    assert c.dashboards.campaign("c1").sent == 7


def test_the_event_schema_document_covers_every_column_and_type() -> None:
    from shared.domain.events import COLUMNS, EVENT_TYPES
    from shared.topology import REPO_ROOT

    text = (REPO_ROOT / "docs" / "events.md").read_text()
    missing = [n for n in (*COLUMNS, *sorted(EVENT_TYPES)) if f"| `{n}` |" not in text]
    assert not missing, f"docs/events.md does not document {missing}"
