"""A rendered batch too large for one event is split, and a redelivered render splits it the
same way: the parts' batch ids are what the send ledger dedupes by."""

from __future__ import annotations

from support import FakeClock

from shared import topology
from shared.bootstrap import Container
from shared.domain.messages import MARKETING, Recipient, RenderRequest, SendBatch
from shared.services import rendering


def _parts(container: Container) -> list[SendBatch]:
    subscription = topology.subscriptions_of(topology.SEND_REQUESTS)[0].name
    deliveries = container.bus.pull(subscription, 100, lease_s=60)
    for delivery in deliveries:
        container.bus.ack(subscription, delivery.message_id)
    return [SendBatch.decode(d.data) for d in deliveries]


def test_a_redelivered_render_splits_into_the_same_parts(local_settings):
    clock = FakeClock()
    container = Container(local_settings, clock=clock)
    recipients = [
        Recipient(f"s{i:04d}", f"reader{i}@example.com", f"Reader {i}", {"city": "Oslo"})
        for i in range(400)
    ]
    request = RenderRequest("big", "newsletter", MARKETING, clock.now, recipients, campaign_id="c1")
    container.render.handle(request)
    first = _parts(container)
    clock.now += 3600.0  # other timestamps in every link and Date header: other compressed sizes
    container.render.handle(request)
    second = _parts(container)

    def layout(parts: list[SendBatch]) -> list[tuple[str, list[str]]]:
        return sorted((p.batch_id, [e.subscriber_id for e in p.emails]) for p in parts)

    assert len(first) >= 2, "400 newsletters are more raw bytes than one part may hold"
    assert layout(first) == layout(second)
    assert {e.subscriber_id for p in first for e in p.emails} == {
        r.subscriber_id for r in recipients
    }
    assert all(len(p.encode()) <= rendering.MAX_BATCH_BYTES for p in first)
