"""The one place that switches email service providers (settings.esp).

`mailer_from_settings` returns the provider's mailer behind the adaptive rate limiter, at
settings.esp_rate_per_s messages per second (per process), or the provider's default rate
when that is 0 (local mode's SMTP sink: 1,000/s). A missing setting is a ConfigurationError
that names it; secret values never appear in errors, logs or reprs. Each provider's module is
imported only when chosen, so boto3 is loaded only for SES.

DKIM: with MAILPIPE_DKIM_PRIVATE_KEY set, SMTP and SES messages are signed just before they
leave (DkimSigningMailer, inside the rate limiter), and so are Mailgun's raw-MIME sends (its
batch requests carry no MIME of ours; Mailgun signs those with the domain's key).
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parseaddr

from shared.adapters.esp.dkim_mailer import DkimSigningMailer
from shared.adapters.esp.dkim_signer import DkimSigner, load_key
from shared.adapters.esp.rate_limit import DEFAULT_RATE_PER_S, RateLimitedMailer
from shared.domain.errors import ConfigurationError
from shared.ports import Mailer
from shared.settings import Settings

LOCAL_SINK_RATE_PER_S = 1000.0


def mailer_from_settings(settings: Settings) -> RateLimitedMailer:
    build = _BUILDERS.get(settings.esp)
    if build is None:
        choices = " | ".join(_BUILDERS)
        raise ConfigurationError(f"MAILPIPE_ESP={settings.esp!r} is not a provider; use {choices}")
    if settings.esp_rate_per_s < 0:
        raise ConfigurationError("MAILPIPE_ESP_RATE_PER_S must be positive (0: provider default)")
    mailer = build(settings)
    signer = dkim_signer_from_settings(settings)
    if signer is not None and settings.esp in ("smtp", "ses"):  # Mailgun: see _mailgun
        mailer = DkimSigningMailer(mailer, signer)
    return RateLimitedMailer(mailer, settings.esp_rate_per_s or _default_rate(settings))


def dkim_signer_from_settings(settings: Settings) -> DkimSigner | None:
    """The DKIM signer when MAILPIPE_DKIM_PRIVATE_KEY is set (else None: mail goes unsigned,
    or signed by the provider with its own key)."""
    if not settings.dkim_private_key:
        return None
    if not settings.dkim_selector:
        raise ConfigurationError(
            "MAILPIPE_DKIM_PRIVATE_KEY is set but MAILPIPE_DKIM_SELECTOR is not"
        )
    return DkimSigner(
        load_key(settings.dkim_private_key), settings.signing_domain, settings.dkim_selector
    )


def _default_rate(settings: Settings) -> float:
    if settings.is_local and settings.esp == "smtp":
        return LOCAL_SINK_RATE_PER_S  # the built-in sink: no provider to protect
    return DEFAULT_RATE_PER_S[settings.esp]


def _require(settings: Settings, *names: str) -> None:
    missing = [f"MAILPIPE_{n.upper()}" for n in names if not getattr(settings, n)]
    if missing:
        raise ConfigurationError(f"MAILPIPE_ESP={settings.esp} needs {' and '.join(missing)}")


def _smtp(settings: Settings) -> Mailer:
    from shared.adapters.esp.smtp_mailer import SmtpMailer

    _require(settings, "smtp_host")
    if settings.smtp_username:
        _require(settings, "smtp_password")
    return SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_username,
        settings.smtp_password,
        starttls=settings.smtp_starttls == "1",
        helo_name=settings.smtp_helo_name,
    )


def _sendgrid(settings: Settings) -> Mailer:
    from shared.adapters.esp.sendgrid_mailer import DEFAULT_BASE_URL, SendGridMailer

    _require(settings, "sendgrid_api_key")
    return SendGridMailer(settings.sendgrid_api_key, settings.esp_base_url or DEFAULT_BASE_URL)


def _mailgun(settings: Settings) -> Mailer:
    from shared.adapters.esp.mailgun_mailer import DEFAULT_BASE_URL, MailgunMailer

    _require(settings, "mailgun_api_key")
    domain = settings.mailgun_domain or parseaddr(settings.sender)[1].partition("@")[2]
    if not domain:
        raise ConfigurationError("MAILPIPE_ESP=mailgun needs MAILPIPE_MAILGUN_DOMAIN")
    signer = dkim_signer_from_settings(settings)  # only its raw-MIME sends carry our bytes
    return MailgunMailer(
        settings.mailgun_api_key,
        domain,
        settings.esp_base_url or DEFAULT_BASE_URL,
        sign=signer.sign if signer else _unsigned,
    )


def _unsigned(raw: bytes) -> bytes:
    return raw


def _ses(settings: Settings) -> Mailer:
    if bool(settings.ses_access_key_id) != bool(settings.ses_secret_access_key):
        raise ConfigurationError(
            "MAILPIPE_ESP=ses needs both MAILPIPE_SES_ACCESS_KEY_ID and "
            "MAILPIPE_SES_SECRET_ACCESS_KEY, or neither (then the AWS_* variables are used)"
        )
    _require(settings, "ses_region")
    try:
        from shared.adapters.esp.ses_mailer import SesMailer
    except ImportError as exc:
        raise ConfigurationError(f"MAILPIPE_ESP=ses needs boto3 installed ({exc})") from exc
    return SesMailer(
        settings.ses_region,
        endpoint_url=settings.esp_base_url,
        access_key_id=settings.ses_access_key_id,
        secret_access_key=settings.ses_secret_access_key,
        configuration_set=settings.ses_configuration_set,
    )


def _null(settings: Settings) -> Mailer:
    from shared.adapters.esp.null_mailer import NullMailer

    return NullMailer()


_BUILDERS: dict[str, Callable[[Settings], Mailer]] = {
    "smtp": _smtp,
    "sendgrid": _sendgrid,
    "mailgun": _mailgun,
    "ses": _ses,
    "null": _null,
}
