"""The webhook parsers in use, by provider path segment (/webhooks/<name>)."""

from __future__ import annotations

from shared.ports import WebhookParser
from shared.settings import Settings


def parsers_from_settings(settings: Settings) -> dict[str, WebhookParser]:
    from shared.adapters.esp.local_webhook import LocalWebhook

    parsers: dict[str, WebhookParser] = {"local": LocalWebhook(settings.signing_key)}
    return parsers
