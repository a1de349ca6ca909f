"""The bulk topics' JSON travels compressed (issue 13, cost): analytics batches and render
requests above Pub/Sub's 1,000-byte billing minimum are Zstandard on the wire, every consumer
reads them as before, and the metered bus bills the smaller size, per topic and direction."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import topology
from shared.adapters.local.sqlite_bus import SqliteBus
from shared.domain.errors import InvalidInput
from shared.domain.events import AnalyticsEvent, decode_events, encode_events, stable_id
from shared.domain.messages import (
    ENCODING_ATTRIBUTE,
    MARKETING,
    ZSTD_JSON,
    Recipient,
    RenderRequest,
    from_json,
)
from shared.metering import OperationMeter
from shared.ports import DeadLetter
from shared.services.dead_letters import readable_payload
from shared.services.publishing import Outbox

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def sends(n: int) -> list[AnalyticsEvent]:
    return [
        AnalyticsEvent(
            event_id=stable_id("send", f"m{i}"),
            event_type="send",
            occurred_at="2026-12-07T18:00:00.000000Z",
            subscriber_id=f"s{i:08d}",
            campaign_id="spring",
            provider="smtp",
            mailbox_provider="gmail",
            message_id=f"<m{i}@example.com>",
            properties={"provider_message_id": f"pm-{i}"},
            received_at="2026-12-07T18:00:01.000000Z",
        )
        for i in range(n)
    ]


def render_request(n: int) -> RenderRequest:
    people = [
        Recipient(f"s{i:08d}", f"reader{i}@example.com", f"Reader{i}", {"city": "Oslo"})
        for i in range(n)
    ]
    return RenderRequest("spring:remainder:3", "newsletter", MARKETING, 1.7e9, people, "spring")


@pytest.fixture
def metered(tmp_path: Path) -> tuple[SqliteBus, OperationMeter]:
    meter = OperationMeter()
    return SqliteBus(tmp_path / "bus.db", topology.SUBSCRIPTIONS, meter=meter), meter


def pull_all(bus: SqliteBus, topic: str) -> list:
    (subscription,) = topology.subscriptions_of(topic)
    return bus.pull(subscription.name, 100)


def test_a_send_deliverys_analytics_go_compressed_and_decode_unchanged(metered) -> None:
    bus, meter = metered
    events = sends(250)
    Outbox(bus).analytics(events)
    (delivery,) = pull_all(bus, topology.ANALYTICS_EVENTS)
    plain = encode_events(events)
    assert delivery.data.startswith(ZSTD_MAGIC)
    assert delivery.attributes[ENCODING_ATTRIBUTE] == ZSTD_JSON
    assert len(delivery.data) * 5 < len(plain)
    assert decode_events(delivery.data) == events
    tallies = meter.snapshot()
    published = tallies[f"pubsub.billable_bytes@publish:{topology.ANALYTICS_EVENTS}"]
    pushed = tallies["pubsub.billable_bytes@push:warehouse-on-analytics-events"]
    assert published.bytes == pushed.bytes == max(1000, len(delivery.data))
    assert tallies["pubsub.billable_bytes"].bytes == published.bytes + pushed.bytes


def test_render_requests_go_compressed_and_other_topics_stay_plain(metered) -> None:
    bus, _ = metered
    request = render_request(100)
    outbox = Outbox(bus)
    outbox.publish_json(topology.RENDER_REQUESTS, [request.to_doc()])
    outbox.publish_json(topology.SUBSCRIBER_EVENTS, [request.to_doc()])
    (render,) = pull_all(bus, topology.RENDER_REQUESTS)
    (other,) = pull_all(bus, topology.SUBSCRIBER_EVENTS)
    assert render.data.startswith(ZSTD_MAGIC)
    assert RenderRequest.decode(render.data) == request
    assert other.data == request.encode() and ENCODING_ATTRIBUTE not in other.attributes


def test_a_message_under_the_billing_minimum_stays_readable_json(metered) -> None:
    bus, _ = metered
    Outbox(bus).analytics(sends(1))
    (delivery,) = pull_all(bus, topology.ANALYTICS_EVENTS)
    assert delivery.data.startswith(b"[{") and ENCODING_ATTRIBUTE not in delivery.attributes
    assert decode_events(delivery.data) == sends(1)


def test_a_corrupt_compressed_message_is_invalid_input_not_a_crash() -> None:
    broken = ZSTD_MAGIC + b"\x00garbage"
    with pytest.raises(InvalidInput, match="analytics events"):
        decode_events(broken)
    with pytest.raises(InvalidInput, match="render request"):
        RenderRequest.decode(broken)
    with pytest.raises(InvalidInput):
        from_json(broken, "dispatch request")


def test_a_dead_lettered_compressed_batch_reads_as_json(metered) -> None:
    bus, _ = metered
    Outbox(bus).analytics(sends(20))
    (delivery,) = pull_all(bus, topology.ANALYTICS_EVENTS)
    letter = DeadLetter(delivery.message_id, "warehouse-on-analytics-events", delivery.data,
                        delivery.attributes, "", "", 5, "boom")  # fmt: skip
    shown = readable_payload(letter)
    assert '"event_type": "send"' in shown and '"subscriber_id": "s00000019"' in shown


def test_the_meter_tallies_an_operation_under_its_detail_too() -> None:
    meter = OperationMeter()
    meter.count("firestore.write", 3, detail="send_ledger")
    meter.count("firestore.write", 2, detail="campaigns")
    meter.count("firestore.write")
    tallies = meter.snapshot()
    assert tallies["firestore.write"].operations == 6
    assert tallies["firestore.write@send_ledger"].operations == 3
    assert tallies["firestore.write@campaigns"].operations == 2
