"""SendGridMailer against a local server that imitates SendGrid v3 and checks every request."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from contract.fakes.clock import FakeClock
from contract.fakes.emails import campaign_emails, with_content
from contract.fakes.esp_servers import FakeSendGrid, Reply
from support import free_port

from shared.adapters.esp.chunk_results import THROTTLED_PREFIX
from shared.adapters.esp.sendgrid_mailer import SendGridMailer
from shared.domain.errors import ConfigurationError, Throttled, TransientError
from shared.services.mime import html_as_sent

API_KEY = "SG.test-key-do-not-log"


@pytest.fixture
def server() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid(API_KEY)
    with fake.running():
        yield fake
    assert fake.problems == [], "requests that break SendGrid's contract"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_800_000_000.0)


@pytest.fixture
def mailer(server: FakeSendGrid, clock: FakeClock) -> Iterator[SendGridMailer]:
    mailer = SendGridMailer(API_KEY, server.url, clock)
    yield mailer
    mailer.close()


def test_a_chunk_goes_as_few_requests_with_one_personalization_per_recipient(
    server: FakeSendGrid, mailer: SendGridMailer
) -> None:
    emails = campaign_emails(["Ann", "Bob", "Zoë", "Mary Ann", "Li"])
    results = mailer.send(emails)

    assert [r.status for r in results] == ["sent"] * 5
    assert [r.message_id for r in results] == [e.message_id for e in emails]
    assert server.personalization_counts == [4, 1], "one-word names share one request"
    ids = {d.recipient: d.provider_id for d in server.deliveries}
    assert [r.provider_message_id for r in results] == [ids[e.recipient] for e in emails]
    for email in emails:  # what SendGrid delivers is exactly what was rendered
        delivered = server.delivery(email.recipient)
        # Raw MIME carries the HTML 7-bit (non-ASCII as character references): the same document.
        assert (delivered.subject, html_as_sent(delivered.html), delivered.text) == (
            email.subject,
            html_as_sent(email.html),
            email.text,
        )
        assert delivered.headers["List-Unsubscribe"] == email.headers["List-Unsubscribe"]
        assert delivered.headers["Message-ID"] == f"<{email.message_id}>"
        assert delivered.args == {
            "message_id": email.message_id,
            "subscriber_id": email.subscriber_id,
            "campaign_id": "cmp-1",
        }


def test_request_shape(server: FakeSendGrid, mailer: SendGridMailer) -> None:
    emails = campaign_emails(["Ann", "Bob"])
    mailer.send(emails)
    (request,) = server.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    body = json.loads(request.body)
    assert body["from"] == {"email": "news@mailpipe.test", "name": "Mailpipe News"}
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "[%mp0%]" in body["content"][1]["value"], "the html is a template"
    assert "Ann" not in json.dumps(body["content"]), "per-recipient values are substitutions"
    assert body["tracking_settings"]["click_tracking"]["enable"] is False
    assert body["tracking_settings"]["open_tracking"]["enable"] is False
    first, second = body["personalizations"]
    assert first["to"] == [{"email": emails[0].recipient}]
    assert first["subject"] == emails[0].subject
    assert first["substitutions"]["[%mp0%]"] == "Ann"
    assert second["substitutions"]["[%mp0%]"] == "Bob"
    assert first["headers"]["List-Unsubscribe"] != second["headers"]["List-Unsubscribe"]


def test_never_more_than_a_thousand_personalizations(
    server: FakeSendGrid, mailer: SendGridMailer
) -> None:
    emails = campaign_emails(["Ann"] * 1001)
    results = mailer.send(emails)
    assert {r.status for r in results} == {"sent"}
    assert server.personalization_counts == [1000, 1]
    assert len(server.deliveries) == 1001


def test_connections_are_reused_across_chunks(server: FakeSendGrid, mailer: SendGridMailer) -> None:
    for start in range(0, 9, 3):
        mailer.send(campaign_emails(["Ann", "Mary Ann", ""], start=start))
    assert len(server.requests) == 9
    assert server.connections() == 1


def test_each_thread_keeps_its_own_pooled_connection(
    server: FakeSendGrid, mailer: SendGridMailer
) -> None:
    def work(n: int) -> None:
        for round_ in range(3):
            assert mailer.send(campaign_emails(["Ann"], start=n * 10 + round_))[0].status == "sent"

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(server.deliveries) == 9
    assert server.connections() == 3


def test_429_before_anything_was_accepted_raises_throttled_with_retry_after(
    server: FakeSendGrid, mailer: SendGridMailer, clock: FakeClock
) -> None:
    server.fail_next(Reply(429, {"errors": [{"message": "slow"}]}, {"Retry-After": "7"}))
    with pytest.raises(Throttled) as caught:
        mailer.send(campaign_emails(["Ann", "Bob"]))
    assert caught.value.retry_after == 7.0
    assert server.deliveries == []

    reset = str(int(clock()) + 12)
    server.fail_next(Reply(429, {"errors": []}, {"X-RateLimit-Reset": reset}))
    with pytest.raises(Throttled) as caught:
        mailer.send(campaign_emails(["Ann"]))
    assert caught.value.retry_after == 12.0


def test_429_after_a_request_was_accepted_returns_the_rest_as_throttled(
    server: FakeSendGrid, mailer: SendGridMailer
) -> None:
    emails = campaign_emails(["Ann", "Mary Ann", "Bob"])  # two requests: [Ann, Bob], [Mary Ann]
    server.script(None, Reply(429, {"errors": []}, {"Retry-After": "1"}))
    results = mailer.send(emails)
    assert [r.status for r in results] == ["sent", "transient", "sent"]
    assert results[1].detail.startswith(THROTTLED_PREFIX)
    assert sorted(server.delivered_to()) == sorted([emails[0].recipient, emails[2].recipient])


def test_5xx_and_unreachable_are_transient(server: FakeSendGrid, mailer: SendGridMailer) -> None:
    server.fail_next(Reply(503, "upstream down"))
    with pytest.raises(TransientError) as caught:
        mailer.send(campaign_emails(["Ann"]))
    assert not isinstance(caught.value, Throttled)
    assert server.deliveries == []

    nowhere = SendGridMailer(API_KEY, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError, match="unreachable"):
        nowhere.send(campaign_emails(["Ann"]))


def test_400_naming_recipients_is_permanent_for_them_and_the_rest_is_sent(
    server: FakeSendGrid, mailer: SendGridMailer
) -> None:
    emails = campaign_emails(["Ann", "Bob", "Cy", "Di"])
    emails[1] = with_content(emails[1], recipient="broken@nowhere")
    results = mailer.send(emails)
    assert [r.status for r in results] == ["sent", "permanent", "sent", "sent"]
    assert "valid address" in results[1].detail
    assert len(server.requests) == 2, "the rejected request, then the others again"
    assert sorted(server.delivered_to()) == sorted(
        e.recipient for e in emails if e is not emails[1]
    )


def test_400_about_the_request_as_a_whole_is_permanent_for_everyone(
    server: FakeSendGrid, mailer: SendGridMailer
) -> None:
    error = {"errors": [{"field": "from.email", "message": "The from address is not verified"}]}
    server.fail_next(Reply(400, error))
    results = mailer.send(campaign_emails(["Ann", "Bob"]))
    assert [r.status for r in results] == ["permanent", "permanent"]
    assert "not verified" in results[0].detail


def test_a_refused_key_is_a_configuration_error_that_never_shows_the_key(
    server: FakeSendGrid,
) -> None:
    mailer = SendGridMailer("SG.wrong-key", server.url)
    with pytest.raises(ConfigurationError) as caught:
        mailer.send(campaign_emails(["Ann"]))
    assert "MAILPIPE_SENDGRID_API_KEY" in str(caught.value)
    assert "wrong-key" not in str(caught.value)
    assert "wrong-key" not in repr(mailer)
