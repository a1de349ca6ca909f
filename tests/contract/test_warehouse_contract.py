"""The Warehouse contract (shared/ports.py), for DuckDbWarehouse and BigQueryWarehouse (against
a REST fake that checks insertAll/jobs.query requests and runs the SQL on DuckDB)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from contract.harnesses import DATASET, gcp_settings

from shared.adapters.gcp.bigquery_warehouse import MAX_BYTES_PER_REQUEST, BigQueryWarehouse
from shared.domain.errors import InvalidInput, PermanentFailure, TransientError
from shared.domain.events import AnalyticsEvent
from shared.metering import OperationMeter


def event(event_id: str, kind: str = "send", **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"subscriber_id": "s1", "campaign_id": "c1"}
    row = AnalyticsEvent(event_id, kind, "2026-11-30T12:00:00.000Z", **(defaults | fields))
    return row.to_row()


COUNT_BY_TYPE = (
    "SELECT event_type, COUNT(*) AS n FROM events WHERE campaign_id = $campaign"
    " GROUP BY event_type ORDER BY event_type"
)


def test_reads_deduplicate_redelivered_events(warehouse: Any) -> None:
    warehouse.append([event("e1"), event("e2", "open"), event("e3", "click")])
    warehouse.append([event("e2", "open"), event("e4")])  # e2 again: a redelivery
    rows = warehouse.query(COUNT_BY_TYPE, {"campaign": "c1"})
    assert rows == [{"event_type": "click", "n": 1}, {"event_type": "open", "n": 1},
                    {"event_type": "send", "n": 2}]  # fmt: skip


def test_parameters_are_values_not_sql(warehouse: Any) -> None:
    warehouse.append([event("e1", campaign_id="c1"), event("e2", campaign_id="c2")])
    sneaky = "c1' OR '1'='1"
    assert warehouse.query(COUNT_BY_TYPE, {"campaign": sneaky}) == []
    rows = warehouse.query(
        "SELECT event_id FROM events WHERE campaign_id = $campaign AND is_machine IS NULL"
        " AND event_id != '$campaign' ORDER BY event_id",
        {"campaign": "c2"},
    )
    assert rows == [{"event_id": "e2"}]


def test_columns_round_trip(warehouse: Any) -> None:
    warehouse.append([event("e1", "click", link_url="https://example.com/a?b=1", variant="B",
                            is_machine=True, properties={"k": "v"})])  # fmt: skip
    (row,) = warehouse.query(
        "SELECT event_id, event_type, link_url, variant, is_machine, subscriber_id, properties"
        " FROM events"
    )
    assert json.loads(row.pop("properties")) == {"k": "v"}
    assert row == {"event_id": "e1", "event_type": "click", "link_url": "https://example.com/a?b=1",
                   "variant": "B", "is_machine": True, "subscriber_id": "s1"}  # fmt: skip


def test_only_reads_are_allowed(warehouse: Any) -> None:
    with pytest.raises(InvalidInput):
        warehouse.query("DELETE FROM events_raw WHERE true")


def test_erasure_pseudonymizes_every_row_of_the_subscriber(warehouse: Any) -> None:
    warehouse.append([event("e1", subscriber_id="gone", link_url="https://x.test/p"),
                      event("e2", "click", subscriber_id="gone", properties={"ip": "1.2.3.4"}),
                      event("e3", subscriber_id="stays", link_url="https://x.test/q")])  # fmt: skip
    warehouse.append([event("e1", subscriber_id="gone", link_url="https://x.test/p")])
    assert warehouse.erase_subscriber("gone") == 3  # every stored copy
    assert warehouse.query("SELECT event_id FROM events WHERE subscriber_id = 'gone'") == []
    erased = warehouse.query(
        "SELECT event_id, link_url, subscriber_id, properties FROM events"
        " WHERE subscriber_id LIKE 'erased-%' ORDER BY event_id"
    )
    assert [r["event_id"] for r in erased] == ["e1", "e2"]
    assert all(r["link_url"] is None and json.loads(r["properties"]) == {} for r in erased)
    assert len({r["subscriber_id"] for r in erased}) == 1
    (kept,) = warehouse.query("SELECT link_url FROM events WHERE subscriber_id = 'stays'")
    assert kept == {"link_url": "https://x.test/q"}
    assert warehouse.erase_subscriber("nobody") == 0


def test_appending_nothing_stores_nothing(warehouse: Any) -> None:
    warehouse.append([])
    assert warehouse.query("SELECT COUNT(*) AS n FROM events") == [{"n": 0}]


def test_rows_are_metered_alike(warehouse: Any, meter: OperationMeter) -> None:
    warehouse.append([event("e1"), event("e2")])
    assert meter.snapshot()["bigquery.rows"].operations == 2
    assert meter.snapshot()["bigquery.rows"].bytes > 100


# -- BigQuery specifics, against the REST fake ----------------------------------------------


@pytest.fixture
def bigquery(fake_bigquery: Any, meter: OperationMeter) -> Any:
    settings = gcp_settings(fake_bigquery.project, bigquery_api_endpoint=fake_bigquery.url)
    return BigQueryWarehouse.from_settings(settings, meter)


def test_inserts_are_chunked_with_event_ids_as_insert_ids(
    bigquery: Any, fake_bigquery: Any
) -> None:
    bigquery.append([event(f"e{i:04d}", properties={"pad": "x" * 50}) for i in range(1_201)])
    calls = fake_bigquery.calls_to("/insertAll")
    assert [len(c.body["rows"]) for c in calls] == [500, 500, 201]
    assert calls[0].path.endswith(f"/datasets/{DATASET}/tables/events_raw/insertAll")
    first = calls[0].body["rows"][0]
    assert first["insertId"] == first["json"]["event_id"] == "e0000"
    assert json.loads(first["json"]["properties"]) == {"pad": "x" * 50}
    assert len(fake_bigquery.raw_rows()) == 1_201


def test_large_rows_keep_requests_under_the_size_limit(bigquery: Any, fake_bigquery: Any) -> None:
    big = "x" * 1_000_000
    bigquery.append([event(f"e{i}", properties={"blob": big}) for i in range(20)])
    sizes = [len(json.dumps(c.body)) for c in fake_bigquery.calls_to("/insertAll")]
    assert len(sizes) >= 3 and max(sizes) < MAX_BYTES_PER_REQUEST
    assert len(fake_bigquery.raw_rows()) == 20


@pytest.mark.parametrize(
    ("reason", "error"),
    [("invalid", PermanentFailure), ("backendError", TransientError),
     ("timeout", TransientError)],
)  # fmt: skip
def test_per_row_errors_are_raised_never_ignored(
    bigquery: Any, fake_bigquery: Any, reason: str, error: type[Exception]
) -> None:
    fake_bigquery.reject_next_rows(reason, index=1)
    with pytest.raises(error, match="e2"):
        bigquery.append([event("e1"), event("e2"), event("e3")])
    assert fake_bigquery.raw_rows() == []  # the request stored nothing


def test_a_row_bigquery_refuses_is_a_permanent_failure(bigquery: Any, fake_bigquery: Any) -> None:
    with pytest.raises(PermanentFailure, match="Missing required field: occurred_at"):
        bigquery.append([{**event("e1"), "occurred_at": None}])


@pytest.mark.parametrize("status", [429, 503])
def test_an_outage_that_lasts_is_transient(bigquery: Any, fake_bigquery: Any, status: int) -> None:
    fake_bigquery.fail_next(status, times=10_000, reason="backendError")
    with pytest.raises(TransientError):
        bigquery.append([event("e1")])


def test_a_passing_outage_is_retried(bigquery: Any, fake_bigquery: Any) -> None:
    fake_bigquery.fail_next(503, times=1, reason="backendError", path_contains="/insertAll")
    bigquery.append([event("e1")])
    assert len(fake_bigquery.raw_rows()) == 1


def test_queries_send_named_parameters_and_the_default_dataset(
    bigquery: Any, fake_bigquery: Any
) -> None:
    bigquery.append([event("e1")])
    bigquery.query(COUNT_BY_TYPE + " LIMIT $top", {"campaign": "c1", "top": 5})
    (call,) = fake_bigquery.calls_to("/queries")
    assert "@campaign" in call.body["query"] and "$campaign" not in call.body["query"]
    assert call.body["defaultDataset"] == {"projectId": fake_bigquery.project,
                                           "datasetId": DATASET}  # fmt: skip
    assert sorted((p["name"], p["parameterType"]["type"], p["parameterValue"]["value"])
                  for p in call.body["queryParameters"]) == [("campaign", "STRING", "c1"),
                                                              ("top", "INT64", "5")]  # fmt: skip


def test_bad_sql_is_invalid_input(bigquery: Any) -> None:
    with pytest.raises(InvalidInput):
        bigquery.query("SELECT no_such_column FROM events")


def test_erasure_waits_for_the_streaming_buffer(bigquery: Any, fake_bigquery: Any) -> None:
    bigquery.append([event("e1", subscriber_id="gone")])
    fake_bigquery.streaming_buffer = True
    with pytest.raises(TransientError, match="streaming buffer"):
        bigquery.erase_subscriber("gone")
    fake_bigquery.streaming_buffer = False
    assert bigquery.erase_subscriber("gone") == 1
    (dml,) = [c for c in fake_bigquery.calls_to("/queries") if "UPDATE" in c.body["query"]][-1:]
    assert "`events_raw`" in dml.body["query"]


# -- the subscriber mirror (subscribers_raw) ---------------------------------------------------


def _mirror_row(sid: str, at: float, **changes: Any) -> dict[str, Any]:
    from shared.domain.subscriber import CONFIRMED, Subscriber
    from shared.domain.subscriber_mirror import change_row, state_of

    fields: dict[str, Any] = {"status": CONFIRMED, "confirmed_at": 1.0, "lists": ["weekly"],
                              "attributes": {"plan": {"tier": "pro"}}} | changes  # fmt: skip
    return change_row(sid, state_of(Subscriber(sid, f"{sid}@example.com", **fields)), at)


def _run(warehouse: Any, query: Any) -> list[dict[str, Any]]:
    dialect = "bigquery" if isinstance(warehouse, BigQueryWarehouse) else "duckdb"
    return warehouse.query(query.for_dialect(dialect), query.params)


def test_the_audience_query_reads_the_latest_mirror_row(warehouse: Any) -> None:
    from shared.domain.segment import Segment
    from shared.services.audience_sql import count_query, members_query

    warehouse.append_subscribers([_mirror_row("s1", 10.0), _mirror_row("s2", 10.0),
                                  _mirror_row("s3", 10.0, lists=["news"])])  # fmt: skip
    warehouse.append_subscribers([_mirror_row("s2", 20.0, status="unsubscribed")])
    warehouse.append_subscribers([_mirror_row("s1", 10.0)])  # a redelivery
    segment = Segment.parse({"all": [{"list": "weekly"},
                                     {"attribute": "plan.tier", "value": "pro"}]})  # fmt: skip
    rows = _run(warehouse, members_query(segment, 100.0))
    assert [(r["subscriber_id"], r["email"], r["tracking"]) for r in rows] == [
        ("s1", "s1@example.com", True)
    ]
    assert json.loads(rows[0]["attributes"]) == {"plan": {"tier": "pro"}}
    assert _run(warehouse, count_query(Segment.parse({}), 100.0)) == [{"n": 2}]


def test_erasure_leaves_only_the_tombstone_in_the_mirror(warehouse: Any) -> None:
    from shared.domain.subscriber_mirror import change_row, tombstone

    warehouse.append_subscribers([_mirror_row("s1", 10.0), _mirror_row("s2", 10.0)])
    warehouse.append_subscribers([change_row("s1", tombstone(), 20.0)])
    warehouse.erase_subscriber("s1")
    rows = warehouse.query("SELECT subscriber_id, erased, email FROM subscribers_raw")
    assert sorted((r["subscriber_id"], r["erased"], r["email"]) for r in rows) == [
        ("s1", True, ""), ("s2", False, "s2@example.com"),
    ]  # fmt: skip
