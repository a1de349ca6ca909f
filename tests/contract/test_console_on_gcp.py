"""The console as GCP serves it: the real admin function (functions/admin/main.py) with
MAILPIPE_BACKEND=gcp, its dashboards read from BigQuery (the REST fake, which runs the
production SQL on DuckDB) and its campaigns from Firestore (the npm emulator). Signing in with
the admin key, the chart pages answer with charts drawn from what the warehouse holds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from contract.harnesses import DATASET, gcp_environment

from shared import bootstrap, settings
from shared.adapters.gcp.bigquery_warehouse import BigQueryWarehouse
from shared.bootstrap import Container
from shared.domain.events import AnalyticsEvent
from shared.metering import OperationMeter

pytestmark = [pytest.mark.emulator, pytest.mark.xdist_group("firestore-npm")]

ADMIN_KEY = "console-on-gcp-admin-key"
CAMPAIGN = "spring-sale"


@pytest.fixture
def gcp_console(
    npm_firestore_host: str, fake_pubsub: Any, fake_bigquery: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Container]:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", npm_firestore_host)
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    environment = gcp_environment(
        fake_bigquery.project,
        fake_pubsub.url,
        MAILPIPE_BIGQUERY_DATASET=DATASET,
        MAILPIPE_BIGQUERY_API_ENDPOINT=fake_bigquery.url,
        MAILPIPE_ADMIN_API_KEY=ADMIN_KEY,
    )
    loaded = settings.load(environment)
    container = Container(loaded, meter=OperationMeter())
    bootstrap.install(container)
    yield container
    bootstrap.install(None)


def _events(now: datetime) -> list[dict[str, Any]]:
    """A day-old campaign to subscribers who joined the day before: 120 sends, 100 deliveries,
    4 bounces, 30 opens, 9 clicks, 1 complaint (enough mail for the dashboards' rate lines)."""
    campaign_day = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    join_day = (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    plan = {"send": 120, "delivered": 100, "bounce": 4, "open": 30, "click": 9, "complaint": 1}
    rows = []
    for kind, count in plan.items():
        for n in range(count):
            fields: dict[str, Any] = {"subscriber_id": f"s{n}", "campaign_id": CAMPAIGN}
            if kind == "click":
                fields["link_url"] = "https://shop.example.com/sale"
            rows.append(AnalyticsEvent(f"{kind}-{n}", kind, campaign_day, **fields).to_row())
    for kind in ("signup", "confirm"):
        rows += [AnalyticsEvent(f"{kind}-{n}", kind, join_day, subscriber_id=f"s{n}").to_row()
                 for n in range(120)]  # fmt: skip
    return rows


def _signed_in(client: Any) -> None:
    page = client.get("/dashboard/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, "the sign-in page has no CSRF field"
    form = {"csrf_token": token.group(1), "key": ADMIN_KEY, "next": "/dashboard/"}
    answer = client.post("/dashboard/sign-in", data=form)
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]


def test_the_admin_function_serves_chart_pages_from_bigquery(
    gcp_console: Container, function_client: Any, fake_bigquery: Any
) -> None:
    assert isinstance(gcp_console.warehouse, BigQueryWarehouse)
    gcp_console.warehouse.append(_events(datetime.now(UTC)))
    client = function_client("admin")
    assert client.get("/dashboard/").status_code in (302, 303)  # not without signing in
    _signed_in(client)

    overview = client.get("/dashboard/")
    text = overview.get_data(as_text=True)
    assert overview.status_code == 200, re.sub(r"(?s).*<main", "", text)[:1500]
    assert CAMPAIGN in text
    campaign = client.get(f"/dashboard/campaigns/{CAMPAIGN}").get_data(as_text=True)
    assert "<svg" in campaign and "120" in campaign  # the sends, as the warehouse counted them
    for path in ("/dashboard/deliverability", "/dashboard/growth"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.get_data(as_text=True)[:800])
        assert "<svg" in page.get_data(as_text=True), path
    read = " ".join(str(c.body.get("query")) for c in fake_bigquery.calls_to("/queries"))
    assert "events_recent" in read, "the chart pages read BigQuery's events_recent view"
