"""Per-backend helpers for the contract suites: how a test arranges a state and observes an
effect differs between backends (the local bus vs Pub/Sub), the assertions do not."""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from contract.fakes.pubsub_server import FakePubSub

from shared import topology
from shared.adapters.gcp.pubsub_dead_letters import SOURCE_ATTRIBUTE_PREFIX
from shared.adapters.gcp.pubsub_publisher import PubSubPublisher
from shared.adapters.local.sqlite_bus import SqliteBus
from shared.metering import OperationMeter
from shared.ports import DeadLetters, OutboundMessage, Publisher
from shared.settings import Settings

MAX_ATTEMPTS = 3
DATASET = "mailpipe_test"


def gcp_environment(project: str, pubsub_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a function deployed with MAILPIPE_BACKEND=gcp, Pub/Sub over REST at
    `pubsub_url`; storage and BigQuery point nowhere unless `overrides` says otherwise."""
    return {
        "MAILPIPE_BACKEND": "gcp",
        "MAILPIPE_GCP_PROJECT": project,
        "MAILPIPE_TEMPLATE_BUCKET": "mailpipe-templates",
        "MAILPIPE_BIGQUERY_DATASET": "mailpipe",
        "MAILPIPE_SIGNING_KEY": "test-signing-key-0123456789abcdef",
        "MAILPIPE_HASH_KEY": "test-hash-key-0123456789abcdef",
        "MAILPIPE_PUBSUB_TRANSPORT": "rest",
        "MAILPIPE_PUBSUB_API_ENDPOINT": pubsub_url,
        "MAILPIPE_STORAGE_API_ENDPOINT": "http://127.0.0.1:9",
        "MAILPIPE_BIGQUERY_API_ENDPOINT": "http://127.0.0.1:9",
        "MAILPIPE_GCP_RETRY_DEADLINE_S": "2",
    } | overrides


def gcp_settings(project: str, **endpoints: Any) -> Settings:
    """backend=gcp settings for one test project; short retry deadlines keep failures fast."""
    return Settings(backend="gcp", gcp_project=project, bigquery_dataset=DATASET,
                    template_bucket="templates", gcp_retry_deadline_s=2.0, **endpoints)  # fmt: skip


def without_pubsub_emulator() -> pytest.MonkeyPatch:
    """google-cloud-pubsub 2.44 breaks a REST client built while PUBSUB_EMULATOR_HOST is set."""
    env = pytest.MonkeyPatch()
    env.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    return env


def rest_publisher(fake: FakePubSub, meter: OperationMeter) -> tuple[Settings, PubSubPublisher]:
    settings = gcp_settings(fake.project, pubsub_transport="rest", pubsub_api_endpoint=fake.url)
    env = without_pubsub_emulator()
    try:
        return settings, PubSubPublisher.from_settings(settings, meter)
    finally:
        env.undo()


class Bus(Protocol):
    """A publisher plus the means to see what reached a topic's subscription."""

    publisher: Publisher
    dead_letters: DeadLetters

    def received(self, topic: str) -> list[tuple[bytes, dict[str, str]]]:
        """(data, attributes) of every message waiting for the topic's function, in order."""

    def dead_letter(self, subscription: str, data: bytes, attributes: dict[str, str]) -> None:
        """Make one message exhaust its MAX_ATTEMPTS deliveries on `subscription`."""


@dataclass
class LocalBus:
    bus: SqliteBus

    @property
    def publisher(self) -> Publisher:
        return self.bus

    @property
    def dead_letters(self) -> DeadLetters:
        return self.bus

    def received(self, topic: str) -> list[tuple[bytes, dict[str, str]]]:
        (sub,) = topology.subscriptions_of(topic)
        found = []
        while batch := self.bus.pull(sub.name, max_messages=100):
            found += [(d.data, dict(d.attributes)) for d in batch]
        return found

    def dead_letter(self, subscription: str, data: bytes, attributes: dict[str, str]) -> None:
        topic = topology.subscription(subscription).topic
        (message_id,) = self.bus.publish(topic, [OutboundMessage(data, attributes)])
        for attempt in range(MAX_ATTEMPTS):
            deliveries = [d for d in self.bus.pull(subscription, 100) if d.message_id == message_id]
            assert deliveries, f"attempt {attempt + 1} was not delivered"
            self.bus.nack(subscription, message_id, f"failure {attempt + 1}")


def dead_letter_attributes(subscription: str, project: str) -> dict[str, str]:
    """What Pub/Sub adds to a message it forwards to a dead-letter topic."""
    return {
        f"{SOURCE_ATTRIBUTE_PREFIX}DeliveryCount": str(MAX_ATTEMPTS),
        f"{SOURCE_ATTRIBUTE_PREFIX}Subscription": subscription,
        f"{SOURCE_ATTRIBUTE_PREFIX}SubscriptionProject": project,
        f"{SOURCE_ATTRIBUTE_PREFIX}TopicPublishTime": "2026-11-30T12:00:00.000+00:00",
    }


@dataclass
class FakePubSubBus:
    """Pub/Sub through the REST fake: dead letters are published to the dead-letter topic
    with the attributes Pub/Sub adds, as the service does after the last failed attempt."""

    publisher: Publisher
    dead_letters: DeadLetters
    fake: Any
    project: str

    def received(self, topic: str) -> list[tuple[bytes, dict[str, str]]]:
        (sub,) = topology.subscriptions_of(topic)
        return [(m.data, m.attributes) for m in self.fake.drain(sub.name)]

    def dead_letter(self, subscription: str, data: bytes, attributes: dict[str, str]) -> None:
        dead_letter_topic = topology.subscription(subscription).dead_letter_topic
        marked = {**attributes, **dead_letter_attributes(subscription, self.project)}
        self.publisher.publish(dead_letter_topic, [OutboundMessage(data, marked)])


@dataclass
class EmulatorPubSubBus:
    """Pub/Sub through the official emulator (PUBSUB_EMULATOR_HOST): the topology's topics
    and subscriptions are created in a fresh project; push subscriptions become pull ones so
    the test can see what reached them."""

    publisher: Publisher
    dead_letters: DeadLetters
    subscriber: Any
    project: str

    def received(self, topic: str) -> list[tuple[bytes, dict[str, str]]]:
        (sub,) = topology.subscriptions_of(topic)
        path = f"projects/{self.project}/subscriptions/{sub.name}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # return_immediately
            response = self.subscriber.pull(
                subscription=path, max_messages=100, return_immediately=True
            )
        return [(r.message.data, dict(r.message.attributes)) for r in response.received_messages]

    def dead_letter(self, subscription: str, data: bytes, attributes: dict[str, str]) -> None:
        dead_letter_topic = topology.subscription(subscription).dead_letter_topic
        marked = {**attributes, **dead_letter_attributes(subscription, self.project)}
        self.publisher.publish(dead_letter_topic, [OutboundMessage(data, marked)])


def create_topology(publisher_client: Any, subscriber_client: Any, project: str) -> None:
    """The topology's topics and subscriptions in an emulator project."""
    for topic in (*topology.TOPICS, *topology.dead_letter_topics()):
        publisher_client.create_topic(name=f"projects/{project}/topics/{topic}")
    for sub in topology.SUBSCRIPTIONS:
        for name, topic in ((sub.name, sub.topic),
                            (sub.dead_letter_subscription, sub.dead_letter_topic)):  # fmt: skip
            subscriber_client.create_subscription(
                name=f"projects/{project}/subscriptions/{name}",
                topic=f"projects/{project}/topics/{topic}",
                ack_deadline_seconds=60,
            )


def unique_project() -> str:
    return f"mailpipe-test-{uuid.uuid4().hex[:10]}"
