"""The dashboard SQL, written once in BigQuery's dialect, gives the same numbers on DuckDB (via
sqlglot's transpiler) as an independent Python computation of the same figures over the same
fixture rows: every number, exactly (rates are one IEEE division on both sides).

BigQuery itself cannot run here. The Python reference below states each figure's definition in
plain code (dedupe by event_id keeping the first received; attribute feedback to the campaign
and variant of the `send` with the same message_id; people = distinct subscriber ids; machine
opens and clicks excluded), so a transpilation that changes meaning shows up as a mismatch.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from shared.adapters.local.duckdb_warehouse import DuckDbWarehouse
from shared.analytics.sql_catalog import RECENT_VIEW_FILE, WINDOW_DAYS, SqlCatalog, Where
from shared.domain import events as ev
from shared.domain.events import COLUMNS

# Weeks ago, inside the 90 days the dashboard queries read (sql/views/events_recent.sql).
START = (datetime.now(UTC) - timedelta(days=40)).replace(hour=8, minute=0, second=0, microsecond=0)
CATALOG = SqlCatalog("duckdb")
Row = dict[str, Any]


# --- fixture rows -----------------------------------------------------------------------------
def fixture_rows(seed: int = 11) -> list[Row]:
    """Every event type, NULLs where real events have them, feedback without campaign or
    variant, machine opens and clicks, redeliveries with a later received_at, and events of
    people and campaigns that only some queries see."""
    rng = random.Random(seed)
    rows: list[Row] = []

    def add(kind: str, at: datetime, **fields: Any) -> Row:
        row = {c: None for c in COLUMNS} | {"properties": {}}
        row |= {"event_id": f"e{len(rows):05d}", "event_type": kind, "occurred_at": at,
                "received_at": at + timedelta(seconds=2)} | fields  # fmt: skip
        rows.append(row)
        return row

    providers = ["gmail", "outlook", "yahoo", "icloud", "other", None]
    people = [f"s{n:03d}" for n in range(90)]
    for n, person in enumerate(people):
        joined = START + timedelta(days=n % 20, hours=n % 7)
        add(ev.SIGNUP, joined, subscriber_id=person, mailbox_provider=rng.choice(providers))
        if n % 9:
            add(ev.CONFIRM, joined + timedelta(hours=3), subscriber_id=person)
        if n % 11 == 0:
            add(ev.UNSUBSCRIBE, joined + timedelta(days=4), subscriber_id=person)
        if n % 13 == 0:
            add(ev.PREFERENCES_CHANGED, joined + timedelta(days=2), subscriber_id=person)
        if n % 29 == 0:
            add(ev.ERASED, joined + timedelta(days=6), subscriber_id=person)
    for campaign, variants, day in (
        ("c-ab", ["A", "B"], 9),
        ("c-one", ["A"], 15),
        ("c-x", [None], 17),
    ):
        _campaign(
            rng, add, campaign, variants, people[: 70 if campaign != "c-x" else 12], day, providers
        )
    for at in (START + timedelta(days=2, minutes=m) for m in range(0, 40, 7)):
        add(ev.SEND_FAILED, at, subscriber_id="s001", campaign_id="c-one", reason="permanent")
        add(ev.SUPPRESSED, at, subscriber_id="s002", campaign_id="c-one")
    add(ev.CUSTOM, START, subscriber_id="s003", properties={"name": "purchase"})
    # redeliveries: the same event_id again, received later (the first received one counts)
    for row in rng.sample(rows, 40):
        rows.append(row | {"received_at": row["received_at"] + timedelta(minutes=5)})
    _outside_the_window(add, rows)
    return rows


def _outside_the_window(add: Callable[..., Row], rows: list[Row]) -> None:
    """Events the dashboards must leave out: long ago, and one whose first copy received lies
    just before the window while a later copy falls inside it (a window applied before
    deduplicating would count that later copy)."""
    old = datetime.now(UTC) - timedelta(days=WINDOW_DAYS + 30)
    add(ev.SIGNUP, old, subscriber_id="s950")
    add(ev.CONFIRM, old, subscriber_id="s950")
    add(ev.SEND, old, subscriber_id="s950", campaign_id="c-old", message_id="c-old.s950",
        variant="A", mailbox_provider="gmail")  # fmt: skip
    edge = datetime.now(UTC) - timedelta(days=WINDOW_DAYS, hours=1)
    first = add(ev.SEND, edge, subscriber_id="s951", campaign_id="c-edge",
                message_id="c-edge.s951", variant="A", mailbox_provider="yahoo")  # fmt: skip
    rows.append(first | {"occurred_at": edge + timedelta(hours=2),
                         "received_at": first["received_at"] + timedelta(hours=2)})  # fmt: skip


def shown(rows: Iterable[Row]) -> list[Row]:
    """What the dashboards count: the deduplicated events of the last WINDOW_DAYS."""
    since = datetime.now(UTC) - timedelta(days=WINDOW_DAYS)
    return [r for r in deduped(rows) if r["occurred_at"] >= since]


def _campaign(rng: random.Random, add: Callable[..., Row], campaign: str, variants: list,
              people: list[str], day: int, providers: list) -> None:  # fmt: skip
    sent_at = START + timedelta(days=day)
    for i, person in enumerate(people):
        variant = variants[i % len(variants)]
        message = f"{campaign}.{person}"
        provider = rng.choice(providers)
        at = sent_at + timedelta(minutes=i)
        add(ev.SEND, at, subscriber_id=person, campaign_id=campaign, variant=variant,
            message_id=message, mailbox_provider=provider, provider="smtp")  # fmt: skip
        # feedback: campaign known only through the message id (as some webhooks do)
        fate = rng.random()
        if fate < 0.1:
            add(ev.BOUNCE, at + timedelta(minutes=3), subscriber_id=person, message_id=message,
                reason=rng.choice(["hard", "soft", None]), mailbox_provider=provider)  # fmt: skip
            continue
        add(ev.DELIVERED, at + timedelta(seconds=30), subscriber_id=person, message_id=message,
            mailbox_provider=provider, campaign_id=campaign if fate < 0.6 else None)  # fmt: skip
        _engagement(rng, add, campaign, person, message, at)


def _engagement(rng: random.Random, add: Callable[..., Row], campaign: str, person: str,
                message: str, at: datetime) -> None:  # fmt: skip
    common = {"subscriber_id": person, "message_id": message, "campaign_id": campaign}
    for k in range(rng.choice([0, 0, 1, 2, 3])):  # opens over several days, some by machines
        machine = rng.choice([True, False, False, None])  # None: a provider that cannot tell
        add(ev.OPEN, at + timedelta(hours=5 + 20 * k), is_machine=machine, **common)
    if rng.random() < 0.35:
        url = rng.choice(["https://a.example/1", "https://a.example/2", "https://b.example/"])
        for k in range(rng.choice([1, 1, 2])):
            add(ev.CLICK, at + timedelta(hours=6 + 26 * k), link_url=url,
                is_machine=rng.random() < 0.2, **common)  # fmt: skip
    if rng.random() < 0.04:
        add(ev.COMPLAINT, at + timedelta(hours=30), subscriber_id=person, message_id=message)
    if rng.random() < 0.05:
        add(ev.UNSUBSCRIBE, at + timedelta(hours=8), **common)


# --- the independent reference ---------------------------------------------------------------
def deduped(rows: Iterable[Row]) -> list[Row]:
    first: dict[str, Row] = {}
    for row in sorted(rows, key=lambda r: r["received_at"]):
        first.setdefault(row["event_id"], row)
    return list(first.values())


def attributed(rows: list[Row]) -> list[Row]:
    sends = {r["message_id"]: r for r in rows if r["event_type"] == "send" and r["message_id"]}
    out = []
    for r in rows:
        s = sends.get(r["message_id"], {})
        out.append(r | {"campaign_id": r["campaign_id"] or s.get("campaign_id"),
                        "variant": r["variant"] or s.get("variant")})  # fmt: skip
    return out


def div(a: int, b: int) -> float | None:
    return a / b if b else None


def human(r: Row) -> bool:
    return r["is_machine"] is not True


def count(rows: list[Row], kind: str, test: Callable[[Row], bool] = lambda r: True) -> int:
    return sum(1 for r in rows if r["event_type"] == kind and test(r))


def people(rows: list[Row], kind: str, test: Callable[[Row], bool] = lambda r: True) -> int:
    return len({r["subscriber_id"] for r in rows if r["event_type"] == kind and test(r)
                and r["subscriber_id"] is not None})  # fmt: skip


def grouped(rows: list[Row], key: Callable[[Row], tuple]) -> dict[tuple, list[Row]]:
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return groups


def engagement(g: list[Row]) -> dict[str, Any]:
    return {
        "unique_opens": people(g, "open", human),
        "unique_clicks": people(g, "click", human),
        "unsubscribes": people(g, "unsubscribe"),
    }


def ref_campaign_summary(rows: list[Row]) -> list[Row]:
    out = []
    for (cid,), g in grouped(attributed(rows), lambda r: (r["campaign_id"],)).items():
        if cid is None:
            continue
        sends = [r["occurred_at"] for r in g if r["event_type"] == "send"]
        t = {"campaign_id": cid, "first_sent_at": min(sends, default=None),
             "last_sent_at": max(sends, default=None), "sent": count(g, "send"),
             "failed": count(g, "send_failed"), "delivered": count(g, "delivered"),
             "bounces": count(g, "bounce"),
             "hard_bounces": count(g, "bounce", lambda r: r["reason"] == "hard"),
             "soft_bounces": count(g, "bounce", lambda r: r["reason"] == "soft"),
             "complaints": count(g, "complaint"), **engagement(g),
             "machine_opens": count(g, "open", lambda r: not human(r)),
             "clicks": count(g, "click", human),
             "machine_clicks": count(g, "click", lambda r: not human(r))}  # fmt: skip
        t |= {"delivery_rate": div(t["delivered"], t["sent"]),
              "bounce_rate": div(t["bounces"], t["sent"]),
              "complaint_rate": div(t["complaints"], t["delivered"]),
              "open_rate": div(t["unique_opens"], t["delivered"]),
              "click_rate": div(t["unique_clicks"], t["delivered"]),
              "click_to_open_rate": div(t["unique_clicks"], t["unique_opens"]),
              "unsubscribe_rate": div(t["unsubscribes"], t["delivered"])}  # fmt: skip
        out.append(t)
    return out


def ref_campaign_daily(rows: list[Row]) -> list[Row]:
    out = []
    key = lambda r: (r["campaign_id"], r["occurred_at"].date())  # noqa: E731
    for (cid, day), g in grouped(attributed(rows), key).items():
        if cid is None:
            continue
        t = {"campaign_id": cid, "day": day, "sent": count(g, "send"),
             "delivered": count(g, "delivered"), "bounces": count(g, "bounce"),
             "complaints": count(g, "complaint"), **engagement(g),
             "machine_opens": count(g, "open", lambda r: not human(r)),
             "clicks": count(g, "click", human)}  # fmt: skip
        t |= {"click_rate": div(t["unique_clicks"], t["delivered"]),
              "click_to_open_rate": div(t["unique_clicks"], t["unique_opens"])}  # fmt: skip
        out.append(t)
    return out


def ref_ab_results(rows: list[Row]) -> list[Row]:
    out = []
    for (cid, variant), g in grouped(
        attributed(rows), lambda r: (r["campaign_id"], r["variant"])
    ).items():
        if cid is None or variant is None:
            continue
        t = {"campaign_id": cid, "variant": variant, "sent": count(g, "send"),
             "delivered": count(g, "delivered"), "bounces": count(g, "bounce"),
             "complaints": count(g, "complaint"), **engagement(g)}  # fmt: skip
        t |= {"open_rate": div(t["unique_opens"], t["delivered"]),
              "click_rate": div(t["unique_clicks"], t["delivered"]),
              "click_to_open_rate": div(t["unique_clicks"], t["unique_opens"])}  # fmt: skip
        out.append(t)
    return out


def ref_deliverability_by_day(rows: list[Row]) -> list[Row]:
    kinds = {"send", "delivered", "bounce", "complaint"}
    key = lambda r: (r["occurred_at"].date(), r["mailbox_provider"] or "other")  # noqa: E731
    out = []
    for (day, provider), g in grouped([r for r in rows if r["event_type"] in kinds], key).items():
        t = {"day": day, "mailbox_provider": provider, "sent": count(g, "send"),
             "delivered": count(g, "delivered"), "bounces": count(g, "bounce"),
             "hard_bounces": count(g, "bounce", lambda r: r["reason"] == "hard"),
             "soft_bounces": count(g, "bounce", lambda r: r["reason"] == "soft"),
             "complaints": count(g, "complaint")}  # fmt: skip
        t |= {"bounce_rate": div(t["bounces"], t["sent"]),
              "hard_bounce_rate": div(t["hard_bounces"], t["sent"]),
              "complaint_rate": div(t["complaints"], t["delivered"])}  # fmt: skip
        out.append(t)
    return out


def ref_deliverability_by_campaign_day(rows: list[Row]) -> list[Row]:
    """The feedback team's per-campaign view (complaints over sent when nothing reports
    deliveries, as with SMTP)."""
    kinds = {"send", "delivered", "bounce", "complaint"}
    key = lambda r: (r["campaign_id"], r["occurred_at"].date())  # noqa: E731
    out = []
    for (cid, day), g in grouped([r for r in rows if r["event_type"] in kinds], key).items():
        t = {"campaign_id": cid, "day": day, "sent": count(g, "send"),
             "delivered": count(g, "delivered"), "bounces": count(g, "bounce"),
             "hard_bounces": count(g, "bounce", lambda r: r["reason"] == "hard"),
             "soft_bounces": count(g, "bounce", lambda r: r["reason"] == "soft"),
             "complaints": count(g, "complaint")}  # fmt: skip
        t["bounce_rate"] = div(t["bounces"], t["sent"])
        t["complaint_rate"] = div(t["complaints"], t["delivered"] or t["sent"])
        for name, line in (("recommended", 0.001), ("maximum", 0.003)):
            for rate in ("complaint", "bounce"):
                value = t[f"{rate}_rate"]
                t[f"{rate}_over_{name}"] = value is not None and value >= line
        out.append(t)
    return out


def ref_subscriber_growth(rows: list[Row]) -> list[Row]:
    kinds = {"signup", "confirm", "unsubscribe", "erased"}
    days = grouped(
        [r for r in rows if r["event_type"] in kinds], lambda r: (r["occurred_at"].date(),)
    )
    out, running, previous = [], 0, None
    for (day,), g in sorted(days.items()):
        t = {"day": day, "signups": people(g, "signup"), "confirmations": people(g, "confirm"),
             "unsubscribes": people(g, "unsubscribe"), "erasures": people(g, "erased")}  # fmt: skip
        t["net_change"] = t["confirmations"] - t["unsubscribes"] - t["erasures"]
        running += t["net_change"]
        t["subscribers"] = running
        t["churn_rate"] = None if previous is None else div(t["unsubscribes"], previous)
        previous = running
        out.append(t)
    return out


def ref_link_clicks(rows: list[Row]) -> list[Row]:
    clicks = [r for r in attributed(rows) if r["event_type"] == "click" and r["link_url"]]
    out = []
    for (cid, url), g in grouped(clicks, lambda r: (r["campaign_id"], r["link_url"])).items():
        if cid is None:
            continue
        out.append({"campaign_id": cid, "link_url": url, "clicks": count(g, "click", human),
                    "unique_clicks": people(g, "click", human),
                    "machine_clicks": count(g, "click", lambda r: not human(r))})  # fmt: skip
    return out


def ref_send_rate_by_minute(rows: list[Row]) -> list[Row]:
    kinds = {"send", "send_failed", "suppressed"}
    minute = lambda r: (r["occurred_at"].replace(second=0, microsecond=0, tzinfo=None),)  # noqa: E731
    sending = [r for r in rows if r["event_type"] in kinds]
    return [{"minute": m, "sent": count(g, "send"), "failed": count(g, "send_failed"),
             "suppressed": count(g, "suppressed")}
            for (m,), g in grouped(sending, minute).items()]  # fmt: skip


REFERENCES: dict[str, Callable[[list[Row]], list[Row]]] = {
    "campaign_summary": ref_campaign_summary,
    "campaign_daily": ref_campaign_daily,
    "ab_results": ref_ab_results,
    "deliverability_by_day": ref_deliverability_by_day,
    "deliverability_by_campaign_day": ref_deliverability_by_campaign_day,
    "subscriber_growth": ref_subscriber_growth,
    "link_clicks": ref_link_clicks,
    "send_rate_by_minute": ref_send_rate_by_minute,
}


# --- the tests ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return fixture_rows()


@pytest.fixture(scope="module")
def warehouse(rows: list[Row], tmp_path_factory: pytest.TempPathFactory) -> DuckDbWarehouse:
    w = DuckDbWarehouse(Path(tmp_path_factory.mktemp("parity")))
    wire = [r | {k: r[k].isoformat() for k in ("occurred_at", "received_at")} for r in rows]
    for start in range(0, len(wire), 97):  # several parts, redeliveries across them
        w.append(wire[start : start + 97])
    return w


def naive_utc(value: Any) -> Any:
    return value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value


def canonical(result: list[Row]) -> list[tuple]:
    rows = [tuple(sorted((k, naive_utc(v)) for k, v in r.items())) for r in result]
    return sorted(rows, key=repr)


# Proven by their own parity tests, against the same kind of independent reference.
TESTED_ELSEWHERE = {"trigger_performance": "tests/unit/test_triggers_report.py"}


def test_every_dashboard_query_has_a_reference() -> None:
    assert sorted([*REFERENCES, *TESTED_ELSEWHERE]) == CATALOG.names()


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_duckdb_gives_exactly_the_reference_figures(
    name: str, rows: list[Row], warehouse: DuckDbWarehouse
) -> None:
    expected = REFERENCES[name](shown(rows))
    got = warehouse.query(CATALOG.query(name))
    assert expected, f"the fixture gives {name} nothing to compute"
    assert canonical(got) == canonical(expected)


def test_the_fixture_exercises_what_the_queries_must_get_right(rows: list[Row]) -> None:
    unique = deduped(rows)
    assert len(unique) < len(rows)  # redeliveries
    outside = {r["campaign_id"] for r in unique} - {r["campaign_id"] for r in shown(rows)}
    assert outside == {"c-old", "c-edge"}  # long ago; first copy just before the window
    assert any(r["campaign_id"] == "c-edge" and r not in unique for r in rows)
    assert any(r["event_type"] == "open" and r["is_machine"] for r in unique)
    assert any(r["event_type"] == "open" and r["is_machine"] is None for r in unique)
    assert any(r["event_type"] == "delivered" and r["campaign_id"] is None for r in unique)
    assert any(r["event_type"] == "send" and r["mailbox_provider"] is None for r in unique)
    assert {r["event_type"] for r in unique} >= ev.EVENT_TYPES - {
        ev.DEFERRED,
        ev.DROPPED,
        ev.SUBSCRIBER_CHANGED,
    }


def test_a_filter_narrows_the_same_query(rows: list[Row], warehouse: DuckDbWarehouse) -> None:
    sql = CATALOG.query("ab_results", [Where("campaign_id", "=", "campaign_id")], ["variant"])
    got = warehouse.query(sql, {"campaign_id": "c-ab"})
    expected = sorted((r for r in ref_ab_results(shown(rows)) if r["campaign_id"] == "c-ab"),
                      key=lambda r: r["variant"])  # fmt: skip
    assert got == expected and [r["variant"] for r in got] == ["A", "B"]


def test_a_since_filter_on_days_and_minutes(rows: list[Row], warehouse: DuckDbWarehouse) -> None:
    since = (START + timedelta(days=11)).date()
    sql = CATALOG.query("deliverability_by_day", [Where("day", ">=", "since")], ["day"])
    got = warehouse.query(sql, {"since": since})
    assert got and all(r["day"] >= since for r in got)
    assert len(got) == sum(1 for r in ref_deliverability_by_day(shown(rows)) if r["day"] >= since)
    moment = START + timedelta(days=2, minutes=10)
    sql = CATALOG.query("send_rate_by_minute", [Where("minute", ">=", "since")])
    minutes = {r["minute"] for r in warehouse.query(sql, {"since": moment})}
    everything = {r["minute"] for r in ref_send_rate_by_minute(shown(rows))}
    assert minutes == {m for m in everything if m >= naive_utc(moment)}
    assert (START + timedelta(days=2, minutes=7)).replace(tzinfo=None) in everything - minutes


@pytest.mark.parametrize("name", CATALOG.names())
def test_each_file_is_valid_bigquery_and_parameter_free(name: str) -> None:
    source = CATALOG.source(name)
    parsed = sqlglot.parse(source, read="bigquery")
    assert len(parsed) == 1, "one query per file"
    assert "@" not in source.split("--")[0] and not list(parsed[0].find_all(sqlglot.exp.Parameter))
    assert "${" not in source  # Terraform reads the files too


def test_the_recent_view_reads_the_window_the_code_knows() -> None:
    source = RECENT_VIEW_FILE.read_text(encoding="utf-8")
    days = {int(n) for n in re.findall(r"INTERVAL (\d+) DAY", source)}
    assert days == {WINDOW_DAYS, WINDOW_DAYS + 1}, "bound a day wider, then the exact window"


@pytest.mark.parametrize("name", CATALOG.names())
def test_no_file_sets_a_window_of_its_own(name: str) -> None:
    """The window is events_recent's alone, so the dashboards cannot drift apart."""
    assert not re.findall(r"INTERVAL \d+ DAY", CATALOG.source(name)), name


def test_bigquery_gets_the_file_verbatim_and_duckdb_named_parameters() -> None:
    where = [Where("campaign_id", "=", "campaign_id")]
    bigquery = SqlCatalog("bigquery").query("link_clicks", where)
    duckdb = CATALOG.query("link_clicks", where)
    assert CATALOG.source("link_clicks").strip() in bigquery
    assert "@campaign_id" in bigquery and "$campaign_id" in duckdb and "COUNTIF" not in duckdb
