"""The one place that switches email service providers (settings.esp)."""

from __future__ import annotations

from shared.domain.errors import ConfigurationError
from shared.ports import Mailer
from shared.settings import Settings


def mailer_from_settings(settings: Settings) -> Mailer:
    if settings.esp == "smtp":
        from shared.adapters.esp.smtp_mailer import SmtpMailer

        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_username,
            settings.smtp_password,
            starttls=settings.smtp_starttls == "1",
        )
    if settings.esp == "null":
        from shared.adapters.esp.null_mailer import NullMailer

        return NullMailer()
    raise ConfigurationError(
        f"MAILPIPE_ESP={settings.esp!r} is not available; choose smtp or null"
    )
