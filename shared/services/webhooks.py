"""Webhooks: verify and normalize a provider's payload, then publish it to esp-feedback.

Nothing is published unless the signature is valid; the feedback stage applies the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict

from shared import topology
from shared.domain.errors import NotFound
from shared.ports import WebhookParser
from shared.services.publishing import Outbox


class WebhookService:
    def __init__(
        self,
        parsers: Mapping[str, WebhookParser],
        outbox: Outbox,
        clock: Callable[[], float],
        not_configured: Callable[[str], str] = lambda p: f"no webhook for provider {p!r}",
    ) -> None:
        self._parsers = parsers
        self._outbox = outbox
        self._clock = clock
        self._not_configured = not_configured

    def receive(self, provider: str, headers: Mapping[str, str], body: bytes) -> int:
        parser = self._parsers.get(provider)
        if parser is None:
            raise NotFound(self._not_configured(provider))
        events = parser.parse(headers, body, self._clock())
        if events:
            self._outbox.publish_json(topology.ESP_FEEDBACK, [asdict(e) for e in events])
        return len(events)
