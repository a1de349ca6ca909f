"""MailgunMailer against a local server that imitates Mailgun's messages API and checks it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
from contract.fakes.emails import campaign_emails, with_content
from contract.fakes.esp_servers import FakeMailgun, Reply
from support import free_port

from shared.adapters.esp.chunk_results import THROTTLED_PREFIX
from shared.adapters.esp.mailgun_mailer import MailgunMailer
from shared.domain.errors import ConfigurationError, Throttled, TransientError
from shared.services.mime import html_as_sent

API_KEY = "key-test-do-not-log"
DOMAIN = "mg.mailpipe.test"


@pytest.fixture
def server() -> Iterator[FakeMailgun]:
    fake = FakeMailgun(API_KEY, DOMAIN)
    with fake.running():
        yield fake
    assert fake.problems == [], "requests that break Mailgun's contract"


@pytest.fixture
def mailer(server: FakeMailgun) -> Iterator[MailgunMailer]:
    mailer = MailgunMailer(API_KEY, DOMAIN, server.url)
    yield mailer
    mailer.close()


def test_merged_messages_go_as_one_batch_and_the_odd_one_as_raw_mime(
    server: FakeMailgun, mailer: MailgunMailer
) -> None:
    emails = campaign_emails(["Ann", "Bob", "Zoë", "Mary Ann"])
    results = mailer.send(emails)

    assert [r.status for r in results] == ["sent"] * 4
    assert server.batch_sizes == [3, 1]
    assert [r.path for r in server.requests] == [
        f"/v3/{DOMAIN}/messages",
        f"/v3/{DOMAIN}/messages.mime",
    ]
    ids = {d.recipient: d.provider_id for d in server.deliveries}
    assert [r.provider_message_id for r in results] == [
        f"{ids[e.recipient]}@{DOMAIN}" for e in emails
    ]
    for email in emails:
        delivered = server.delivery(email.recipient)
        # Raw MIME carries the HTML 7-bit (non-ASCII as character references): the same document.
        assert (delivered.subject, html_as_sent(delivered.html), delivered.text) == (
            email.subject,
            html_as_sent(email.html),
            email.text,
        )
        assert delivered.header("List-Unsubscribe") == email.headers["List-Unsubscribe"]
        assert delivered.header("Message-ID") == f"<{email.message_id}>"
        assert delivered.args == {
            "message_id": email.message_id,
            "subscriber_id": email.subscriber_id,
            "campaign_id": "cmp-1",
        }
    assert server.delivery(emails[3].recipient).raw == emails[3].raw, "raw MIME byte for byte"


def test_batch_request_shape(server: FakeMailgun, mailer: MailgunMailer) -> None:
    emails = campaign_emails(["Ann", "Bob"])
    mailer.send(emails)
    (request,) = server.requests
    credentials = base64.b64encode(f"api:{API_KEY}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {credentials}"
    fields = parse_qsl(request.body.decode())
    form = dict(fields)
    assert [v for k, v in fields if k == "to"] == [e.recipient for e in emails]
    assert "%recipient.mp0%" in form["subject"]
    assert "Ann" not in form["html"] + form["text"] + form["subject"]
    assert form["h:List-Unsubscribe"].startswith("%recipient.")
    assert form["v:message_id"] == "%recipient.mp_message_id%"
    assert form["o:tracking-clicks"] == form["o:tracking-opens"] == "no"
    variables = json.loads(form["recipient-variables"])
    assert variables[emails[0].recipient]["mp_message_id"] == emails[0].message_id
    assert variables[emails[1].recipient]["mp0"] == "Bob"


def test_at_most_a_thousand_recipients_per_batch(
    server: FakeMailgun, mailer: MailgunMailer
) -> None:
    results = mailer.send(campaign_emails(["Ann"] * 1002))
    assert {r.status for r in results} == {"sent"}
    assert server.batch_sizes == [1000, 2]


def test_a_repeated_address_never_shares_a_batch(
    server: FakeMailgun, mailer: MailgunMailer
) -> None:
    ann, bob = campaign_emails(["Ann", "Bob"])
    again = with_content(ann, message_id="other@mailpipe.test")
    results = mailer.send([ann, bob, again])
    assert [r.status for r in results] == ["sent"] * 3
    assert server.batch_sizes == [2, 1]
    assert sorted(
        d.args["message_id"] for d in server.deliveries if d.recipient == ann.recipient
    ) == sorted([ann.message_id, "other@mailpipe.test"])


def test_429_raises_throttled_with_retry_after(server: FakeMailgun, mailer: MailgunMailer) -> None:
    server.fail_next(Reply(429, {"message": "slow"}, {"Retry-After": "3"}))
    with pytest.raises(Throttled) as caught:
        mailer.send(campaign_emails(["Ann", "Bob"]))
    assert caught.value.retry_after == 3.0
    assert server.deliveries == []


def test_429_after_a_batch_was_accepted_returns_the_rest_as_throttled(
    server: FakeMailgun, mailer: MailgunMailer
) -> None:
    server.script(None, Reply(429, {"message": "slow"}, {"Retry-After": "1"}))
    results = mailer.send(campaign_emails(["Ann", "Mary Ann", "Bob"]))
    assert [r.status for r in results] == ["sent", "transient", "sent"]
    assert results[1].detail.startswith(THROTTLED_PREFIX)


def test_a_bad_address_in_a_batch_is_found_by_halving(
    server: FakeMailgun, mailer: MailgunMailer
) -> None:
    emails = campaign_emails(["Ann"] * 16)
    emails[5] = with_content(emails[5], recipient="broken@nowhere")
    results = mailer.send(emails)
    assert [i for i, r in enumerate(results) if r.status == "permanent"] == [5]
    assert sum(r.status == "sent" for r in results) == 15
    assert "not a valid address" in results[5].detail
    assert len(server.requests) <= 1 + 2 * 4, "a binary search, not one request per message"
    assert "broken@nowhere" not in server.delivered_to()


def test_other_4xx_are_permanent_5xx_transient(server: FakeMailgun, mailer: MailgunMailer) -> None:
    server.fail_next(Reply(402, {"message": "payment required"}))
    assert [r.status for r in mailer.send(campaign_emails(["Ann", "Bob"]))] == ["permanent"] * 2

    server.fail_next(Reply(502, "bad gateway"))
    with pytest.raises(TransientError):
        mailer.send(campaign_emails(["Ann"]))

    nowhere = MailgunMailer(API_KEY, DOMAIN, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError, match="unreachable"):
        nowhere.send(campaign_emails(["Ann"]))


def test_wrong_key_or_domain_is_a_configuration_error(server: FakeMailgun) -> None:
    with pytest.raises(ConfigurationError, match="MAILPIPE_MAILGUN_API_KEY") as caught:
        MailgunMailer("key-wrong", DOMAIN, server.url).send(campaign_emails(["Ann"]))
    assert "key-wrong" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="MAILPIPE_MAILGUN_DOMAIN"):
        MailgunMailer(API_KEY, "other.test", server.url).send(campaign_emails(["Ann"]))
