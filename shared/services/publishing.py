"""Outbox: how services put messages on topics (JSON, or pre-encoded bytes).

On the topics whose volume grows with every email (render requests, analytics), JSON longer
than Pub/Sub's 1,000-byte billing minimum goes Zstandard-compressed (messages.wire_json): ~7x
fewer bytes, billed twice (publish and push). Other topics carry a few small messages per
person or per run and stay plain JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared import topology
from shared.domain.events import AnalyticsEvent, encode_rows, utc_iso
from shared.domain.messages import ENCODING_ATTRIBUTE, ZSTD_JSON, to_json, wire_json
from shared.ports import OutboundMessage, Publisher

ANALYTICS_BATCH = 500
COMPRESSED_TOPICS = frozenset({topology.RENDER_REQUESTS, topology.ANALYTICS_EVENTS})


class Outbox:
    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    def publish_json(
        self, topic: str, payloads: Sequence[Any], attributes: Mapping[str, str] | None = None
    ) -> list[str]:
        pack = topic in COMPRESSED_TOPICS
        messages = [_message(to_json(p), attributes or {}, pack) for p in payloads]
        return self._publisher.publish(topic, messages)

    def publish_bytes(self, topic: str, blobs: Sequence[bytes]) -> list[str]:
        """Pre-encoded zstd+json payloads (send batches)."""
        messages = [OutboundMessage(b, {ENCODING_ATTRIBUTE: ZSTD_JSON}) for b in blobs]
        return self._publisher.publish(topic, messages)

    def analytics(self, events: Sequence[AnalyticsEvent]) -> None:
        """Events for the warehouse, a few hundred per message to keep Pub/Sub cheap."""
        now = utc_iso()
        self.analytics_rows([e.wire_row(now) for e in events])

    def analytics_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """`analytics` for events already as warehouse rows (`AnalyticsEvent.to_row`'s)."""
        messages = [
            _message(encode_rows(list(rows[i : i + ANALYTICS_BATCH])), pack=True)
            for i in range(0, len(rows), ANALYTICS_BATCH)
        ]
        if messages:
            self._publisher.publish(topology.ANALYTICS_EVENTS, messages)


def _message(
    data: bytes, attributes: Mapping[str, str] | None = None, pack: bool = False
) -> OutboundMessage:
    packed, encoding = wire_json(data) if pack else (data, {})
    return OutboundMessage(packed, {**(attributes or {}), **encoding})
