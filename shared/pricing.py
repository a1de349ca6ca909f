"""List prices used to turn counted operations into dollars (USD, us-central1/europe-west1
tier 1, without free tiers). Checked against the GCP pricing pages on PRICES_AS_OF; change them
here and only here. `make bench` multiplies the operations a local run counted by these."""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-11-30"
TIB = 1024**4
GIB = 1024**3


@dataclass(frozen=True)
class Price:
    usd: float
    per: str  # what one `usd` buys
    source: str


PRICES: dict[str, Price] = {
    "firestore.read": Price(0.06 / 100_000, "document read", "Firestore: $0.06 per 100k reads"),
    "firestore.write": Price(0.18 / 100_000, "document write", "Firestore: $0.18 per 100k writes"),
    "firestore.delete": Price(0.02 / 100_000, "document delete", "Firestore: $0.02 per 100k"),
    "pubsub.byte": Price(40 / TIB, "byte", "Pub/Sub: $40 per TiB, 1,000-byte minimum per message"),
    "functions.invocation": Price(0.40 / 1_000_000, "request", "$0.40 per million requests"),
    "functions.vcpu_second": Price(0.000024, "vCPU-second", "Cloud Run functions tier 1"),
    "functions.gib_second": Price(0.0000025, "GiB-second", "Cloud Run functions tier 1"),
    "bigquery.streaming_byte": Price(
        0.01 / (200 * 1024**2), "byte", "BigQuery streaming inserts: $0.01 per 200 MB, 1 KB/row"
    ),
    "bigquery.query_byte": Price(6.25 / TIB, "byte scanned", "BigQuery on-demand: $6.25 per TiB"),
    "bigquery.storage_write_byte": Price(
        0.025 / GIB, "byte", "BigQuery Storage Write API: $0.025 per GiB, no per-row minimum"
    ),
    # Cloud Storage, Standard class, regional: what a claim-check of send batches would cost
    # (README, "Cost per million emails"); adapters that touch buckets count them under
    # storage.class_a (writes, lists) and storage.class_b (reads).
    "storage.class_a": Price(0.005 / 1000, "operation", "Cloud Storage: $0.005 per 1,000 class A"),
    "storage.class_b": Price(0.0004 / 1000, "operation", "Cloud Storage: $0.0004 / 1,000 class B"),
    "storage.gib_month": Price(0.020, "GiB-month", "Cloud Storage Standard, regional: $0.020"),
}

PUBSUB_MIN_BYTES = 1000  # every publish and every push delivery is billed at least this
BIGQUERY_MIN_ROW_BYTES = 1024


def vcpus_for_memory(memory_mb: int) -> float:
    """The CPU a 2nd-gen function gets with its memory setting (Cloud Run functions defaults)."""
    for limit, cpu in ((128, 0.083), (256, 0.167), (512, 0.333), (1024, 0.583), (2048, 1.0)):
        if memory_mb <= limit:
            return cpu
    return 2.0
