"""Backends for the contract suites: every port's suite runs against the local adapter and the
GCP adapter (official client against an emulator or a REST fake), with the same assertions.

Parameters per port (ids):
  documents   sqlite | firestore-npm | firestore-gcloud (only when FIRESTORE_EMULATOR_HOST is set)
  bus         sqlite-bus | pubsub-rest-fake | pubsub-gcloud (only when PUBSUB_EMULATOR_HOST is set)
  blobs       filesystem | gcs-emulator
  warehouse   duckdb | bigquery-rest-fake

Emulator parameters carry `@pytest.mark.emulator` and an xdist group, so under
`-n 2 --dist loadgroup` one worker owns each emulator (started once per worker session).

`@pytest.mark.known_gap(backend, reason)` marks a test that a backend is known to fail (an
emulator that lacks a feature): it runs there as a strict xfail, so the gap is proven, not
assumed, and the test says so the day the emulator gains the feature.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from contract.emulators import firestore_emulator, storage_emulator
from contract.fakes.bigquery_server import FakeBigQuery
from contract.fakes.pubsub_server import FakePubSub
from contract.harnesses import (
    DATASET,
    MAX_ATTEMPTS,
    EmulatorPubSubBus,
    FakePubSubBus,
    LocalBus,
    create_topology,
    gcp_settings,
    rest_publisher,
    unique_project,
    without_pubsub_emulator,
)

from shared.adapters.gcp import clients
from shared.adapters.gcp.bigquery_warehouse import BigQueryWarehouse
from shared.adapters.gcp.firestore_documents import FirestoreDocuments
from shared.adapters.gcp.gcs_blobs import GcsBlobs
from shared.adapters.gcp.pubsub_dead_letters import PubSubDeadLetters
from shared.adapters.gcp.pubsub_publisher import PubSubPublisher
from shared.adapters.local.duckdb_warehouse import DuckDbWarehouse
from shared.adapters.local.filesystem_blobs import FilesystemBlobs
from shared.adapters.local.sqlite_bus import SqliteBus
from shared.adapters.local.sqlite_documents import SqliteDocuments
from shared.metering import OperationMeter
from shared.topology import RetryPolicy

GCLOUD_FIRESTORE = os.environ.get("FIRESTORE_EMULATOR_HOST", "")
GCLOUD_PUBSUB = os.environ.get("PUBSUB_EMULATOR_HOST", "")


def _emulated(name: str, group: str) -> Any:
    return pytest.param(name, marks=[pytest.mark.emulator, pytest.mark.xdist_group(group)])


DOCUMENT_BACKENDS = [
    "sqlite",
    _emulated("firestore-npm", "firestore-npm"),
    *([_emulated("firestore-gcloud", "firestore-gcloud")] if GCLOUD_FIRESTORE else []),
]
BUS_BACKENDS = [
    "sqlite-bus",
    "pubsub-rest-fake",
    *([_emulated("pubsub-gcloud", "pubsub-gcloud")] if GCLOUD_PUBSUB else []),
]
BLOB_BACKENDS = ["filesystem", _emulated("gcs-emulator", "gcs")]
WAREHOUSE_BACKENDS = ["duckdb", "duckdb-streamed", "bigquery-rest-fake"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "known_gap(backend, reason): strict xfail on backend")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        backends = [v for v in callspec.params.values() if isinstance(v, str)]
        for gap in item.iter_markers("known_gap"):
            if gap.args[0] in backends:
                item.add_marker(pytest.mark.xfail(strict=True, reason=gap.args[1]))


@pytest.fixture
def meter() -> OperationMeter:
    return OperationMeter()


# -- emulators (one per worker session) ----------------------------------------------------


@pytest.fixture(scope="session")
def npm_firestore_host() -> Iterator[str]:
    with firestore_emulator() as host:
        yield host


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    with storage_emulator() as endpoint:
        yield endpoint


def firestore_client(host: str, project: str) -> Any:
    """A client for the emulator at `host` (the SDK reads FIRESTORE_EMULATOR_HOST when built;
    several emulators can serve one test session, so it is set just for that moment)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FIRESTORE_EMULATOR_HOST", host)
        return clients.firestore_client(gcp_settings(project))


# -- DocumentStore -------------------------------------------------------------------------


@pytest.fixture(params=DOCUMENT_BACKENDS)
def documents(request: pytest.FixtureRequest, tmp_path: Path, meter: OperationMeter) -> Any:
    backend = request.param
    if backend == "sqlite":
        return SqliteDocuments(tmp_path / "documents.sqlite3", meter)
    host = (
        request.getfixturevalue("npm_firestore_host")
        if backend == "firestore-npm"
        else (GCLOUD_FIRESTORE)
    )
    # A project per test: emulators keep projects apart, so tests never see each other's data.
    return FirestoreDocuments(firestore_client(host, unique_project()), meter)


# -- Publisher and DeadLetters -------------------------------------------------------------


@pytest.fixture
def fake_pubsub() -> Iterator[FakePubSub]:
    fake = FakePubSub(unique_project()).start()
    yield fake
    fake.stop()
    assert not fake.violations, fake.violations


@pytest.fixture(params=BUS_BACKENDS)
def bus(request: pytest.FixtureRequest, tmp_path: Path, meter: OperationMeter) -> Any:
    backend = request.param
    if backend == "sqlite-bus":
        policy = RetryPolicy(minimum_backoff_s=0, maximum_backoff_s=0, max_attempts=MAX_ATTEMPTS)
        return LocalBus(SqliteBus(tmp_path / "bus.sqlite3", retry_override=policy, meter=meter))
    if backend == "pubsub-rest-fake":
        fake = request.getfixturevalue("fake_pubsub")
        settings, publisher = rest_publisher(fake, meter)
        env = without_pubsub_emulator()
        try:
            dead_letters = PubSubDeadLetters.from_settings(settings, meter, publisher)
        finally:
            env.undo()
        return FakePubSubBus(publisher, dead_letters, fake, fake.project)
    return _emulator_bus(meter)


def _emulator_bus(meter: OperationMeter) -> EmulatorPubSubBus:
    project = unique_project()
    settings = gcp_settings(project)
    publisher = PubSubPublisher.from_settings(settings, meter)
    subscriber = clients.subscriber_client(settings)
    create_topology(publisher._client, subscriber, project)
    dead_letters = PubSubDeadLetters.from_settings(settings, meter, publisher)
    return EmulatorPubSubBus(publisher, dead_letters, subscriber, project)


# -- BlobStore -----------------------------------------------------------------------------


@pytest.fixture(params=BLOB_BACKENDS)
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "filesystem":
        return FilesystemBlobs(tmp_path / "templates")
    endpoint = request.getfixturevalue("gcs_endpoint")
    settings = replace(gcp_settings(unique_project()), storage_api_endpoint=endpoint,
                       template_bucket=unique_project())  # fmt: skip
    clients.storage_client(settings).create_bucket(settings.template_bucket)
    return GcsBlobs.from_settings(settings)


# -- Warehouse -----------------------------------------------------------------------------


@pytest.fixture
def fake_bigquery() -> Iterator[FakeBigQuery]:
    fake = FakeBigQuery(unique_project(), DATASET).start()
    yield fake
    fake.stop()
    assert not fake.violations, fake.violations


@pytest.fixture(params=WAREHOUSE_BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, meter: OperationMeter) -> Any:
    if request.param.startswith("duckdb"):
        snapshot = request.param == "duckdb"
        return DuckDbWarehouse(tmp_path / "warehouse", meter, snapshot_reads=snapshot)
    fake = request.getfixturevalue("fake_bigquery")
    settings = gcp_settings(fake.project, bigquery_api_endpoint=fake.url)
    return BigQueryWarehouse.from_settings(settings, meter)
