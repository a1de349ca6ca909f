"""Functions-level proof: MAILPIPE_BACKEND=gcp settings wire the GCP adapters, and a signup
through the real service (and the real signup function) writes the subscriber to Firestore
(the npm emulator) and publishes `signed_up` through Pub/Sub's REST API (the checking fake)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from contract.harnesses import gcp_environment

from shared import bootstrap, settings, topology
from shared.adapters.gcp.bigquery_warehouse import BigQueryWarehouse
from shared.adapters.gcp.firestore_documents import FirestoreDocuments
from shared.adapters.gcp.gcs_blobs import GcsBlobs
from shared.adapters.gcp.pubsub_dead_letters import PubSubDeadLetters
from shared.adapters.gcp.pubsub_publisher import PubSubPublisher
from shared.bootstrap import Container
from shared.domain.messages import SIGNED_UP
from shared.metering import OperationMeter
from shared.services.signup import SignupForm

pytestmark = [pytest.mark.emulator, pytest.mark.xdist_group("firestore-npm")]


@pytest.fixture
def gcp_container(
    npm_firestore_host: str, fake_pubsub: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Container]:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", npm_firestore_host)
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    loaded = settings.load(gcp_environment(fake_pubsub.project, fake_pubsub.url))
    container = Container(loaded, meter=OperationMeter())
    bootstrap.install(container)
    yield container
    bootstrap.install(None)


def test_gcp_settings_select_the_gcp_adapters(gcp_container: Container) -> None:
    assert isinstance(gcp_container.documents, FirestoreDocuments)
    assert isinstance(gcp_container.publisher, PubSubPublisher)
    assert isinstance(gcp_container.dead_letters, PubSubDeadLetters)
    assert isinstance(gcp_container.blobs, GcsBlobs)
    assert isinstance(gcp_container.warehouse, BigQueryWarehouse)


def signed_up_events(fake_pubsub: Any) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in fake_pubsub.messages(topology.SUBSCRIBER_EVENTS)]


def test_signup_service_writes_firestore_and_publishes(
    gcp_container: Container, fake_pubsub: Any
) -> None:
    form = SignupForm(email="Ada@Example.com", first_name="Ada", ip="203.0.113.9",
                      consent_text="Yes, mail me")  # fmt: skip
    gcp_container.signup.signup(form)
    subscriber_id = gcp_container.subscribers.id_for("ada@example.com")
    stored = gcp_container.documents.get("subscribers", subscriber_id)
    assert stored is not None and stored["status"] == "pending"
    assert stored["first_name"] == "Ada"
    (event,) = signed_up_events(fake_pubsub)
    assert (event["kind"], event["subscriber_id"]) == (SIGNED_UP, subscriber_id)
    meter = gcp_container.meter.snapshot()
    assert meter["pubsub.publish"].operations == 1
    assert meter["firestore.write"].operations >= 2  # the subscriber and its rate limit


def test_signup_function_on_gcp_adapters(
    gcp_container: Container, fake_pubsub: Any, function_client: Callable[[str], Any]
) -> None:
    response = function_client("signup").post(
        "/", json={"email": "grace@example.com", "first_name": "Grace"}
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    subscriber_id = gcp_container.subscribers.id_for("grace@example.com")
    assert gcp_container.documents.get("subscribers", subscriber_id) is not None
    assert [e["subscriber_id"] for e in signed_up_events(fake_pubsub)] == [subscriber_id]
