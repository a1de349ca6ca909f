"""The GCP cost of a million emails, from the operations a benchmark run counted times the list
prices in shared/pricing.py. Function compute is priced from the CPU time each invocation
used: an instance with a fraction f of a vCPU runs a CPU-bound invocation for cpu_s / f seconds,
billed as vCPU-seconds (= cpu_s) plus GiB-seconds (memory x cpu_s / f)."""

from __future__ import annotations

from typing import Any

from shared import topology
from shared.metering import DETAIL
from shared.pricing import PRICES, PRICES_AS_OF

GIB = 1024**3


def _price(name: str, amount: float) -> float:
    return PRICES[name].usd * amount


def _functions(operations: dict[str, dict[str, float]]) -> dict[str, float]:
    invocations = cpu_s = gib_s = 0.0
    for name, tally in operations.items():
        if not name.startswith("function."):
            continue
        function = topology.function(name.removeprefix("function."))
        invocations += tally["operations"]
        cpu_s += tally["seconds"]
        instance_s = tally["seconds"] / function.vcpu  # its cpu, else its memory tier's
        gib_s += instance_s * function.memory_mb / 1024
    return {
        "functions_invocations": _price("functions.invocation", invocations),
        "functions_cpu": _price("functions.vcpu_second", cpu_s),
        "functions_memory": _price("functions.gib_second", gib_s),
    }


def per_million(operations: dict[str, dict[str, float]], emails: int) -> dict[str, Any]:
    """Dollars per million emails, by component, with the counts behind them."""

    def ops(name: str, field: str = "operations") -> float:
        return float(operations.get(name, {}).get(field, 0))

    components = {
        "firestore_reads": _price("firestore.read", ops("firestore.read")),
        "firestore_writes": _price("firestore.write", ops("firestore.write")),
        "firestore_deletes": _price("firestore.delete", ops("firestore.delete")),
        "pubsub": _price("pubsub.byte", ops("pubsub.billable_bytes", "bytes")),
        "bigquery_streaming": _price("bigquery.streaming_byte", ops("bigquery.rows", "bytes")),
        "bigquery_queries": _price("bigquery.query_byte", ops("bigquery.query", "bytes")),
        "storage_operations": _price("storage.class_a", ops("storage.class_a"))
        + _price("storage.class_b", ops("storage.class_b")),
        **_functions(operations),
    }
    scale = 1_000_000 / emails
    dollars = {k: round(v * scale, 4) for k, v in components.items()}
    return {
        "usd_per_million": round(sum(dollars.values()), 3),
        "components_usd_per_million": dollars,
        "per_email": {
            "firestore_reads": round(ops("firestore.read") / emails, 3),
            "firestore_writes": round(ops("firestore.write") / emails, 4),
            "pubsub_messages": round(ops("pubsub.billable_bytes") / emails, 4),
            "pubsub_billable_bytes": round(ops("pubsub.billable_bytes", "bytes") / emails),
            "bigquery_rows": round(ops("bigquery.rows") / emails, 3),
        },
        "prices_as_of": PRICES_AS_OF,
        "excludes": "the email provider's own fees",
    }


# Metered operation -> (price, the tally field it is priced by), for the breakdown by detail.
_PRICED_BY = {
    "firestore.read": ("firestore.read", "operations"),
    "firestore.write": ("firestore.write", "operations"),
    "firestore.delete": ("firestore.delete", "operations"),
    "pubsub.billable_bytes": ("pubsub.byte", "bytes"),
    "bigquery.rows": ("bigquery.streaming_byte", "bytes"),
}


def breakdown(operations: dict[str, dict[str, float]], emails: int) -> dict[str, dict[str, Any]]:
    """Where each priced component comes from: per Firestore collection, per Pub/Sub topic and
    direction (publish / push), per warehouse table, the dollars per million emails and the
    operations and bytes per email behind them."""
    scale = 1_000_000 / emails
    found: dict[str, dict[str, Any]] = {}
    for key, tally in sorted(operations.items()):
        name, _, detail = key.partition(DETAIL)
        if not detail or name not in _PRICED_BY:
            continue
        price, field = _PRICED_BY[name]
        found.setdefault(name, {})[detail] = {
            "usd_per_million": round(_price(price, tally[field]) * scale, 4),
            "per_email": round(tally["operations"] / emails, 4),
            "bytes_per_email": round(tally["bytes"] / emails) if tally["bytes"] else 0,
        }
    return found
