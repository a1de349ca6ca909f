"""mailer_from_settings: the one switch between providers, each behind the rate limiter."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.adapters.esp.mailgun_mailer import MailgunMailer
from shared.adapters.esp.null_mailer import NullMailer
from shared.adapters.esp.providers import LOCAL_SINK_RATE_PER_S, mailer_from_settings
from shared.adapters.esp.rate_limit import DEFAULT_RATE_PER_S, RateLimitedMailer
from shared.adapters.esp.sendgrid_mailer import SendGridMailer
from shared.adapters.esp.ses_mailer import SesMailer
from shared.adapters.esp.smtp_mailer import SmtpMailer
from shared.domain.errors import ConfigurationError
from shared.settings import Settings, load

GCP = Settings(backend="gcp", gcp_project="p", template_bucket="b", signing_key="s", hash_key="h")
SECRET = "super-secret-value"


@pytest.mark.parametrize(
    ("esp", "changes", "kind"),
    [
        ("smtp", {"smtp_host": "relay.example"}, SmtpMailer),
        ("sendgrid", {"sendgrid_api_key": SECRET}, SendGridMailer),
        ("mailgun", {"mailgun_api_key": SECRET, "mailgun_domain": "mg.example"}, MailgunMailer),
        ("ses", {"ses_access_key_id": "AKID", "ses_secret_access_key": SECRET}, SesMailer),
        ("null", {}, NullMailer),
    ],
)
def test_each_provider_comes_rate_limited_at_its_default(
    esp: str, changes: dict, kind: type
) -> None:
    mailer = mailer_from_settings(replace(GCP, esp=esp, **changes))
    assert isinstance(mailer, RateLimitedMailer)
    assert isinstance(mailer.inner, kind)
    assert mailer.name == esp
    assert mailer.rate == DEFAULT_RATE_PER_S[esp]
    assert SECRET not in repr(mailer.inner)


def test_the_configured_rate_wins() -> None:
    mailer = mailer_from_settings(
        replace(GCP, esp="sendgrid", sendgrid_api_key="k", esp_rate_per_s=42)
    )
    assert mailer.rate == 42


def test_local_mode_sends_to_its_own_sink_unhurried() -> None:
    assert mailer_from_settings(Settings()).rate == LOCAL_SINK_RATE_PER_S


def test_mailgun_domain_defaults_to_the_senders() -> None:
    settings = replace(GCP, esp="mailgun", mailgun_api_key="k", sender="News <news@mg.example>")
    mailer = mailer_from_settings(settings)
    assert "mg.example" in repr(mailer.inner)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"esp": "sendgrid"}, "MAILPIPE_ESP=sendgrid needs MAILPIPE_SENDGRID_API_KEY"),
        ({"esp": "mailgun", "sender": "x"}, "MAILPIPE_ESP=mailgun needs MAILPIPE_MAILGUN_API_KEY"),
        (
            {"esp": "mailgun", "mailgun_api_key": "k", "sender": "no-address"},
            "MAILPIPE_ESP=mailgun needs MAILPIPE_MAILGUN_DOMAIN",
        ),
        ({"esp": "ses", "ses_access_key_id": "AKID"}, "MAILPIPE_SES_SECRET_ACCESS_KEY"),
        ({"esp": "ses", "ses_region": ""}, "MAILPIPE_ESP=ses needs MAILPIPE_SES_REGION"),
        ({"esp": "smtp", "smtp_host": ""}, "MAILPIPE_ESP=smtp needs MAILPIPE_SMTP_HOST"),
        ({"esp": "smtp", "smtp_username": "u"}, "MAILPIPE_ESP=smtp needs MAILPIPE_SMTP_PASSWORD"),
        ({"esp": "postmark"}, "MAILPIPE_ESP='postmark' is not a provider; use smtp | sendgrid"),
        ({"esp": "null", "esp_rate_per_s": -1}, "MAILPIPE_ESP_RATE_PER_S must be positive"),
    ],
)
def test_missing_settings_are_named(changes: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        mailer_from_settings(replace(GCP, **changes))
    assert message in str(caught.value)


def test_from_the_environment() -> None:
    env = {
        "MAILPIPE_ESP": "ses",
        "MAILPIPE_SES_REGION": "us-east-2",
        "MAILPIPE_SES_CONFIGURATION_SET": "events",
        "MAILPIPE_SES_ACCESS_KEY_ID": "AKID",
        "MAILPIPE_SES_SECRET_ACCESS_KEY": SECRET,
        "MAILPIPE_ESP_RATE_PER_S": "25",
    }
    mailer = mailer_from_settings(load(env))
    assert mailer.rate == 25
    assert "us-east-2" in repr(mailer.inner)
    assert SECRET not in repr(mailer.inner)
