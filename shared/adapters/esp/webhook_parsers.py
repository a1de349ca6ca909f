"""The webhook parsers in use, by provider path segment (/webhooks/<name>).

A provider is served only when its verification key is configured; any other name answers
404 saying which setting enables it, so an unconfigured provider can never accept unsigned
feedback.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.adapters.esp.sns_certificates import SnsHttp
from shared.domain.errors import ConfigurationError
from shared.ports import DocumentStore, WebhookParser
from shared.settings import Settings

# Provider -> the setting that turns its webhook on (for the 404 message).
ENABLING_SETTINGS = {
    "sendgrid": "MAILPIPE_SENDGRID_WEBHOOK_PUBLIC_KEY",
    "mailgun": "MAILPIPE_MAILGUN_WEBHOOK_SIGNING_KEY",
    "ses": "MAILPIPE_SES_TOPIC_ARNS",
}


def parsers_from_settings(
    settings: Settings,
    documents: Callable[[], DocumentStore] | None = None,
    sns_http: SnsHttp | None = None,
) -> dict[str, WebhookParser]:
    """Every configured provider's parser. `documents` is called only when Mailgun needs its
    replay store; `sns_http` defaults to real HTTPS requests."""
    from shared.adapters.esp.local_webhook import LocalWebhook

    parsers: dict[str, WebhookParser] = {"local": LocalWebhook(settings.signing_key)}
    if settings.sendgrid_webhook_public_key:
        from shared.adapters.esp.sendgrid_webhook import SendGridWebhook

        parsers["sendgrid"] = SendGridWebhook(settings.sendgrid_webhook_public_key)
    if settings.mailgun_webhook_signing_key:
        from shared.adapters.esp.mailgun_webhook import MailgunWebhook
        from shared.repositories.tokens import SeenWebhookTokens

        if documents is None:
            raise ConfigurationError("the Mailgun webhook needs a document store for replay tokens")
        parsers["mailgun"] = MailgunWebhook(
            settings.mailgun_webhook_signing_key, SeenWebhookTokens(documents())
        )
    if settings.ses_topic_arns:
        from shared.adapters.esp.ses_webhook import SesWebhook
        from shared.adapters.esp.sns_certificates import RequestsSnsHttp

        parsers["ses"] = SesWebhook(settings.ses_topic_arns, sns_http or RequestsSnsHttp())
    return parsers


def not_configured_message(provider: str) -> str:
    """Why /webhooks/<provider> answers 404."""
    setting = ENABLING_SETTINGS.get(provider)
    if setting:
        return f"the {provider} webhook is not enabled: set {setting}"
    known = ", ".join(sorted(ENABLING_SETTINGS))
    return f"no webhook for provider {provider!r}; known providers: {known}"
