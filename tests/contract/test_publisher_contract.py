"""The Publisher contract (shared/ports.py), for SqliteBus and PubSubPublisher."""

from __future__ import annotations

from typing import Any

import pytest
from contract.harnesses import rest_publisher

from shared import topology
from shared.domain.errors import InvalidInput
from shared.metering import OperationMeter
from shared.ports import OutboundMessage

TOPIC = topology.SUBSCRIBER_EVENTS


def test_publish_returns_ids_once_every_message_arrived(bus: Any) -> None:
    messages = [OutboundMessage(f"m{i}".encode(), {"n": str(i)}) for i in range(25)]
    ids = bus.publisher.publish(TOPIC, messages)
    assert len(ids) == 25 and len(set(ids)) == 25
    assert all(isinstance(i, str) and i for i in ids)
    assert bus.received(TOPIC) == [(m.data, dict(m.attributes)) for m in messages]


def test_binary_data_and_attributes_arrive_intact(bus: Any) -> None:
    data = bytes(range(256))
    bus.publisher.publish(TOPIC, [OutboundMessage(data, {"k": "välue ✓", "empty": ""})])
    bus.publisher.publish(TOPIC, [OutboundMessage(b"", {"only": "attributes"})])
    assert bus.received(TOPIC) == [(data, {"k": "välue ✓", "empty": ""}),
                                   (b"", {"only": "attributes"})]  # fmt: skip


def test_topics_are_kept_apart(bus: Any) -> None:
    bus.publisher.publish(topology.SEND_REQUESTS, [OutboundMessage(b"send")])
    bus.publisher.publish(TOPIC, [OutboundMessage(b"signup")])
    assert bus.received(topology.SEND_REQUESTS) == [(b"send", {})]
    assert bus.received(TOPIC) == [(b"signup", {})]


@pytest.mark.parametrize(
    "bad",
    [OutboundMessage(b""), OutboundMessage(b"x", {"n": 1})],  # type: ignore[dict-item]
    ids=["empty", "non-string attribute"],
)
def test_messages_pubsub_refuses_are_refused_before_anything_is_sent(
    bus: Any, bad: OutboundMessage
) -> None:
    with pytest.raises(InvalidInput):
        bus.publisher.publish(TOPIC, [OutboundMessage(b"fine"), bad])
    assert bus.received(TOPIC) == []


def test_publishing_nothing_is_a_no_op(bus: Any) -> None:
    assert bus.publisher.publish(TOPIC, []) == []
    assert bus.received(TOPIC) == []


def test_publishes_are_metered_alike(bus: Any, meter: OperationMeter) -> None:
    bus.publisher.publish(TOPIC, [OutboundMessage(b"12345"), OutboundMessage(b"678")])
    tally = meter.snapshot()["pubsub.publish"]
    assert (tally.operations, tally.bytes) == (2, 8)


# -- Pub/Sub specifics, against the REST fake -----------------------------------------------


@pytest.fixture
def pubsub(fake_pubsub: Any, meter: OperationMeter) -> Any:
    return rest_publisher(fake_pubsub, meter)[1]


def test_messages_are_batched_into_few_requests(pubsub: Any, fake_pubsub: Any) -> None:
    pubsub.publish(TOPIC, [OutboundMessage(b"x" * 100, {"i": str(i)}) for i in range(300)])
    requests = fake_pubsub.calls_to(f"/topics/{TOPIC}:publish")
    assert 1 <= len(requests) <= 3
    assert sum(len(r.body["messages"]) for r in requests) == 300
    assert requests[0].path == f"/v1/projects/{fake_pubsub.project}/topics/{TOPIC}:publish"


def test_a_passing_outage_is_retried_before_publish_returns(pubsub: Any, fake_pubsub: Any) -> None:
    fake_pubsub.fail_next(503, times=2, path_contains=":publish")
    ids = pubsub.publish(TOPIC, [OutboundMessage(b"once")])
    assert len(ids) == 1
    assert [m.data for m in fake_pubsub.messages(TOPIC)] == [b"once"]
    assert len(fake_pubsub.calls_to(":publish")) == 3


@pytest.mark.parametrize("status", [429, 503])
def test_an_outage_that_lasts_is_a_transient_error(
    pubsub: Any, fake_pubsub: Any, status: int
) -> None:
    from shared.domain.errors import TransientError

    fake_pubsub.fail_next(status, times=10_000, path_contains=":publish")
    with pytest.raises(TransientError):
        pubsub.publish(TOPIC, [OutboundMessage(b"lost?")])
    assert fake_pubsub.messages(TOPIC) == []


def test_an_unknown_topic_is_not_found(pubsub: Any) -> None:
    from shared.domain.errors import NotFound

    with pytest.raises(NotFound):
        pubsub.publish("no-such-topic", [OutboundMessage(b"x")])
