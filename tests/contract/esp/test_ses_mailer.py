"""SesMailer (boto3 `sesv2`) against a local server that speaks SES v2's REST JSON and checks the
SigV4 Authorization header and the raw message."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from contract.fakes.emails import campaign_emails, with_content
from contract.fakes.esp_servers import FakeSes
from support import free_port

from shared.adapters.esp.chunk_results import THROTTLED_PREFIX
from shared.adapters.esp.ses_mailer import SesMailer
from shared.domain.errors import ConfigurationError, Throttled, TransientError

KEY_ID = "AKIDMAILPIPETEST"
SECRET = "ses-secret-do-not-log"
REGION = "eu-west-1"


@pytest.fixture
def server() -> Iterator[FakeSes]:
    fake = FakeSes(KEY_ID, REGION)
    with fake.running():
        yield fake
    assert fake.problems == [], "requests that break SES's contract"


def ses(url: str, key_id: str = KEY_ID, configuration_set: str = "mailpipe-events") -> SesMailer:
    return SesMailer(REGION, url, key_id, SECRET, configuration_set)


@pytest.fixture
def mailer(server: FakeSes) -> Iterator[SesMailer]:
    mailer = ses(server.url)
    yield mailer
    mailer.close()


def test_each_message_goes_raw_signed_and_tagged(server: FakeSes, mailer: SesMailer) -> None:
    emails = campaign_emails(["Ann", "Mary Ann"])
    results = mailer.send(emails)

    assert [r.status for r in results] == ["sent", "sent"]
    assert [r.provider_message_id for r in results] == [d.provider_id for d in server.deliveries]
    assert len(server.requests) == 2
    for email, delivered in zip(emails, server.deliveries, strict=True):
        assert delivered.recipient == email.recipient
        assert delivered.raw == email.raw, "the raw MIME byte for byte"
        assert delivered.header("List-Unsubscribe") == email.headers["List-Unsubscribe"]
        assert delivered.args == {
            "message_id": email.message_id.partition("@")[0],
            "subscriber_id": email.subscriber_id,
            "campaign_id": "cmp-1",
        }
    body = json.loads(server.requests[0].body)
    assert body["ConfigurationSetName"] == "mailpipe-events"
    assert body["FromEmailAddress"] == "news@mailpipe.test"
    assert (
        server.requests[0]
        .headers["Authorization"]
        .startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    )


def test_tags_ses_cannot_take_are_left_out(server: FakeSes, mailer: SesMailer) -> None:
    (email,) = campaign_emails(["Ann"], campaign_id="spring sale/2026")
    assert mailer.send([email])[0].status == "sent"
    assert "campaign_id" not in server.deliveries[0].args
    assert server.deliveries[0].args["subscriber_id"] == email.subscriber_id


def test_too_many_requests_before_anything_was_accepted_raises_throttled(
    server: FakeSes, mailer: SesMailer
) -> None:
    server.fail_next(FakeSes.error(429, "TooManyRequestsException", "Maximum sending rate"))
    with pytest.raises(Throttled, match="TooManyRequestsException"):
        mailer.send(campaign_emails(["Ann", "Bob"]))
    assert server.deliveries == []
    assert len(server.requests) == 1, "botocore's own retries are off"


def test_throttling_after_an_accepted_message_returns_the_rest_as_throttled(
    server: FakeSes, mailer: SesMailer
) -> None:
    server.script(None, FakeSes.error(400, "Throttling", "Rate exceeded"))
    results = mailer.send(campaign_emails(["Ann", "Bob", "Cy"]))
    assert [r.status for r in results] == ["sent", "transient", "transient"]
    assert all(r.detail.startswith(THROTTLED_PREFIX) for r in results[1:])
    assert len(server.requests) == 2


def test_rejections_are_permanent_for_that_message_only(server: FakeSes, mailer: SesMailer) -> None:
    emails = campaign_emails(["Ann", "Bob", "Cy"])
    emails[0] = with_content(emails[0], recipient="broken@nowhere")
    # the fake rejects broken@nowhere itself; the next valid request gets this:
    server.fail_next(FakeSes.error(400, "MailFromDomainNotVerifiedException", "not verified"))
    results = mailer.send(emails)
    assert [r.status for r in results] == ["permanent", "permanent", "sent"]
    assert "MessageRejected" in results[0].detail
    assert "MailFromDomainNotVerified" in results[1].detail
    assert server.delivered_to() == [emails[2].recipient]


def test_server_errors_paused_sending_and_no_connection_are_transient(
    server: FakeSes, mailer: SesMailer
) -> None:
    server.fail_next(FakeSes.error(500, "InternalFailure", "oops"))
    with pytest.raises(TransientError) as caught:
        mailer.send(campaign_emails(["Ann"]))
    assert not isinstance(caught.value, Throttled)

    server.fail_next(FakeSes.error(400, "SendingPausedException", "paused"))
    with pytest.raises(TransientError, match="SendingPaused"):
        mailer.send(campaign_emails(["Ann"]))

    with pytest.raises(TransientError, match="unreachable"):
        ses(f"http://127.0.0.1:{free_port()}").send(campaign_emails(["Ann"]))


def test_refused_credentials_are_a_configuration_error(server: FakeSes) -> None:
    mailer = ses(server.url, key_id="AKIDWRONG")
    with pytest.raises(ConfigurationError, match="MAILPIPE_SES_ACCESS_KEY_ID") as caught:
        mailer.send(campaign_emails(["Ann"]))
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(mailer)


def test_an_unknown_configuration_set_is_a_configuration_error(server: FakeSes) -> None:
    server.fail_next(FakeSes.error(404, "NotFoundException", "configuration set does not exist"))
    with pytest.raises(ConfigurationError, match="MAILPIPE_SES_CONFIGURATION_SET"):
        ses(server.url).send(campaign_emails(["Ann"]))


def test_without_a_configuration_set_none_is_sent(server: FakeSes) -> None:
    ses(server.url, configuration_set="").send(campaign_emails(["Ann"]))
    assert "ConfigurationSetName" not in json.loads(server.requests[0].body)
