"""Outbox: how services put messages on topics (JSON, or pre-encoded bytes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared import topology
from shared.domain.events import AnalyticsEvent, encode_events
from shared.domain.messages import ENCODING_ATTRIBUTE, ZSTD_JSON, to_json
from shared.ports import OutboundMessage, Publisher

ANALYTICS_BATCH = 500


class Outbox:
    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    def publish_json(
        self, topic: str, payloads: Sequence[Any], attributes: Mapping[str, str] | None = None
    ) -> list[str]:
        messages = [OutboundMessage(to_json(p), dict(attributes or {})) for p in payloads]
        return self._publisher.publish(topic, messages)

    def publish_bytes(self, topic: str, blobs: Sequence[bytes]) -> list[str]:
        """Pre-encoded zstd+json payloads (send batches)."""
        messages = [OutboundMessage(b, {ENCODING_ATTRIBUTE: ZSTD_JSON}) for b in blobs]
        return self._publisher.publish(topic, messages)

    def analytics(self, events: Sequence[AnalyticsEvent]) -> None:
        """Events for the warehouse, a few hundred per message to keep Pub/Sub cheap."""
        chunks = [
            list(events[i : i + ANALYTICS_BATCH]) for i in range(0, len(events), ANALYTICS_BATCH)
        ]
        messages = [OutboundMessage(encode_events(chunk)) for chunk in chunks]
        if messages:
            self._publisher.publish(topology.ANALYTICS_EVENTS, messages)
