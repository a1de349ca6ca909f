"""The cost model of `make bench` (issue 13): components priced from counted operations, and
the breakdown by detail (collection, topic and direction, table) adding up to them."""

from __future__ import annotations

import pytest

from shared.bench import cost
from shared.pricing import PRICES


def tally(operations: int, nbytes: int = 0) -> dict[str, float]:
    return {"operations": operations, "bytes": nbytes, "seconds": 0.0}


OPERATIONS = {
    "firestore.write": {"operations": 3000, "bytes": 0, "seconds": 0.0},
    "firestore.write@send_ledger": {"operations": 2800, "bytes": 0, "seconds": 0.0},
    "firestore.write@campaigns": {"operations": 200, "bytes": 0, "seconds": 0.0},
    "pubsub.billable_bytes": {"operations": 40, "bytes": 9_000_000, "seconds": 0.0},
    "pubsub.billable_bytes@publish:send-requests": tally(20, 4_500_000),
    "pubsub.billable_bytes@push:send-on-send-requests": tally(20, 4_500_000),
    "bigquery.rows": {"operations": 10_000, "bytes": 10_240_000, "seconds": 0.0},
    "bigquery.rows@events_raw": {"operations": 10_000, "bytes": 10_240_000, "seconds": 0.0},
    "bigquery.query": {"operations": 2, "bytes": 200_000_000, "seconds": 0.0},
    "storage.class_a": {"operations": 40, "bytes": 0, "seconds": 0.0},
    "storage.class_b": {"operations": 40, "bytes": 0, "seconds": 0.0},
}
EMAILS = 10_000


def test_each_component_is_its_count_times_its_list_price_per_million() -> None:
    figures = cost.per_million(OPERATIONS, EMAILS)["components_usd_per_million"]
    per_million = 1_000_000 / EMAILS
    assert figures["firestore_writes"] == pytest.approx(
        3000 * PRICES["firestore.write"].usd * per_million, abs=1e-4)  # fmt: skip
    assert figures["pubsub"] == pytest.approx(
        9_000_000 * PRICES["pubsub.byte"].usd * per_million, abs=1e-4)  # fmt: skip
    assert figures["bigquery_queries"] == pytest.approx(
        200_000_000 * PRICES["bigquery.query_byte"].usd * per_million, abs=1e-4)  # fmt: skip
    storage = 40 * (PRICES["storage.class_a"].usd + PRICES["storage.class_b"].usd)
    assert figures["storage_operations"] == pytest.approx(storage * per_million, abs=1e-4)


def test_the_breakdown_by_detail_adds_up_to_each_component() -> None:
    components = cost.per_million(OPERATIONS, EMAILS)["components_usd_per_million"]
    found = cost.breakdown(OPERATIONS, EMAILS)
    assert set(found["firestore.write"]) == {"send_ledger", "campaigns"}
    assert found["firestore.write"]["send_ledger"]["per_email"] == 0.28
    parts = found["pubsub.billable_bytes"]
    assert set(parts) == {"publish:send-requests", "push:send-on-send-requests"}
    assert parts["publish:send-requests"]["bytes_per_email"] == 450
    for name, component in (("firestore.write", "firestore_writes"),
                            ("pubsub.billable_bytes", "pubsub"),
                            ("bigquery.rows", "bigquery_streaming")):  # fmt: skip
        total = sum(part["usd_per_million"] for part in found[name].values())
        assert total == pytest.approx(components[component], abs=2e-4)
