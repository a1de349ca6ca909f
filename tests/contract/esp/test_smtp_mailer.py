"""SmtpMailer against a real aiosmtpd server (the local sink's handler plus scripted replies),
offering PIPELINING (one round trip per message, the next message begun with this one's data)
or not (smtplib's sendmail): every test runs against both."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from contract.fakes.emails import campaign_emails, with_content
from contract.fakes.smtp_server import ScriptedHandler, smtp_server
from support import free_port

from shared import settings as settings_module
from shared.adapters.esp.chunk_results import THROTTLED_PREFIX
from shared.adapters.esp.providers import mailer_from_settings
from shared.adapters.esp.smtp_mailer import SmtpMailer, is_server_wide
from shared.bootstrap import Container
from shared.domain.errors import Throttled, TransientError
from shared.settings import Settings


@pytest.fixture(params=[True, False], ids=["pipelining", "no-pipelining"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ScriptedHandler, int]]:
    with smtp_server(tmp_path / "maildir", pipelining=request.param) as running:
        yield running


@pytest.fixture
def handler(server: tuple[ScriptedHandler, int]) -> ScriptedHandler:
    return server[0]


@pytest.fixture
def mailer(server: tuple[ScriptedHandler, int]) -> Iterator[SmtpMailer]:
    mailer = SmtpMailer("127.0.0.1", server[1])
    yield mailer
    mailer.close()


def test_chunks_go_over_one_pooled_connection(handler: ScriptedHandler, mailer: SmtpMailer) -> None:
    first = campaign_emails(["Ann", "Bob"])
    second = campaign_emails(["Cy", "Di"], start=2)
    assert [r.status for r in mailer.send(first) + mailer.send(second)] == ["sent"] * 4
    assert handler.connections == 1
    stored = {str(m["Message-ID"]).strip("<>"): m for m in handler.messages()}
    for email in first + second:
        message = stored[email.message_id]
        assert message["Delivered-To"] == email.recipient
        assert message["List-Unsubscribe"] == email.headers["List-Unsubscribe"]
        assert message.as_bytes().endswith(
            email.raw.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
        )


def test_reconnects_when_the_server_closed_an_idle_connection(tmp_path: Path) -> None:
    for idle_check_s in (0.0, 3600.0):  # probed with NOOP / found closed while sending
        with smtp_server(tmp_path / f"maildir-{idle_check_s}", idle_timeout_s=0.2) as (
            handler,
            port,
        ):
            mailer = SmtpMailer("127.0.0.1", port, idle_check_s=idle_check_s)
            assert mailer.send(campaign_emails(["Ann"]))[0].status == "sent"
            time.sleep(0.5)  # the server drops the idle connection after 0.2 s
            assert mailer.send(campaign_emails(["Bob"], start=1))[0].status == "sent"
            assert handler.connections == 2
            assert len(handler.messages()) == 2
            mailer.close()


def test_a_connection_idle_for_a_while_is_probed_before_use(
    server: tuple[ScriptedHandler, int],
) -> None:
    handler, port = server
    eager = SmtpMailer("127.0.0.1", port, idle_check_s=0.0)
    relaxed = SmtpMailer("127.0.0.1", port, idle_check_s=3600.0)
    for mailer in (relaxed, eager):
        for n in range(2):
            assert mailer.send(campaign_emails(["Ann"], start=n))[0].status == "sent"
        mailer.close()
    assert handler.noops == 1, "only the eager pool probed, before reusing its connection"


def test_5xx_is_permanent_for_that_recipient_only(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    emails = campaign_emails(["Ann", "Bob", "Cy"], local_part="bounce-")
    emails[0] = with_content(emails[0], recipient="ann@example.com")
    emails[2] = with_content(emails[2], recipient="cy@example.com")
    results = mailer.send(emails)
    assert [r.status for r in results] == ["sent", "permanent", "sent"]
    assert results[1].detail.startswith("550")
    assert handler.message_ids() == {emails[0].message_id: 1, emails[2].message_id: 1}


def test_4xx_other_than_slow_down_is_transient_and_the_chunk_goes_on(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    handler.rcpt_replies = ["452 4.2.2 mailbox full"]
    results = mailer.send(campaign_emails(["Ann", "Bob"]))
    assert [r.status for r in results] == ["transient", "sent"]
    assert results[0].detail.startswith("452")
    assert not results[0].detail.startswith(THROTTLED_PREFIX)


@pytest.mark.parametrize("reply", ["421 4.7.0 try again later", "454 4.7.0 slow down"])
def test_slow_down_before_anything_was_accepted_raises_throttled(
    handler: ScriptedHandler, mailer: SmtpMailer, reply: str
) -> None:
    handler.rcpt_replies = [reply]
    with pytest.raises(Throttled, match=reply[:3]):
        mailer.send(campaign_emails(["Ann", "Bob"]))
    assert handler.messages() == []
    assert mailer.send(campaign_emails(["Ann"]))[0].status == "sent", "the pool recovers"


def test_slow_down_after_an_accepted_message_defers_the_rest(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    emails = campaign_emails(["Ann", "Bob", "Cy"])
    emails[1] = with_content(emails[1], recipient="throttle-bob@example.com")  # the sink: 421
    results = mailer.send(emails)
    assert [r.status for r in results] == ["sent", "transient", "transient"]
    assert all(r.detail.startswith(THROTTLED_PREFIX + "SMTP server asked") for r in results[1:])
    assert handler.message_ids() == {emails[0].message_id: 1}, "nothing after the 421 was tried"


def test_an_unreachable_server_is_transient() -> None:
    mailer = SmtpMailer("127.0.0.1", free_port(), timeout_s=2.0)
    with pytest.raises(TransientError, match="unreachable"):
        mailer.send(campaign_emails(["Ann"]))


def test_one_connection_per_thread_and_close_ends_them_all(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    results: list[str] = []

    def work(n: int) -> None:
        for round_ in range(3):
            batch = campaign_emails([f"T{n}"], start=n * 10 + round_)
            results.extend(r.status for r in mailer.send(batch))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["sent"] * 9
    assert handler.connections == 3
    assert mailer.open_connections == 3
    mailer.close()
    assert mailer.open_connections == 0
    assert len(handler.messages()) == 9


def test_a_refused_message_does_not_disturb_the_next_one_begun_with_it(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    emails = campaign_emails(["Ann", "Bob", "Cy", "Di"])
    handler.data_replies = ["554 5.6.0 content rejected"]  # Ann's end of DATA
    emails[2] = with_content(emails[2], recipient="bounce-cy@example.com")
    results = mailer.send(emails)
    assert [r.status for r in results] == ["permanent", "sent", "permanent", "sent"]
    assert results[0].detail.startswith("554") and results[2].detail.startswith("550")
    assert handler.message_ids() == {emails[1].message_id: 1, emails[3].message_id: 1}
    assert handler.connections == 1


def test_slow_down_at_the_end_of_data_abandons_the_begun_transaction(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    """454 (not closing) to Ann's data while Bob's transaction is begun (when pipelining): the
    chunk stops, and Bob's transaction goes with its connection, not ended with an empty
    message (nor left for a NOOP or QUIT to be taken for message data)."""
    handler.data_replies = ["454 4.7.0 slow down"]
    emails = campaign_emails(["Ann", "Bob", "Cy"])
    with pytest.raises(Throttled, match="454"):
        mailer.send(emails)
    assert mailer.open_connections == (0 if handler.pipelining else 1)
    assert mailer.send(emails[2:])[0].status == "sent", "the pool recovers"
    time.sleep(0.2)  # for an aborted transaction to be stored, were it wrongly ended
    assert handler.message_ids() == {emails[2].message_id: 1}


def test_8bit_and_utf8_messages_are_sent_with_their_mail_parameters(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    ann, bob = campaign_emails(["Ann", "Bob"])
    ann = replace(ann, raw=ann.raw.replace(b"\r\n\r\n", "\r\n\r\nGrüße.\r\n".encode(), 1))
    bob = replace(bob, recipient="jürgen@example.com")
    assert [r.status for r in mailer.send([ann, bob])] == ["sent", "sent"]
    delivered_to_bob = "Delivered-To: jürgen@example.com\r\n".encode()
    stored = {delivered_to_bob in raw: raw for raw in handler.raw_messages()}
    assert stored[False].endswith(b"\r\n" + ann.raw)
    assert stored[True].endswith(delivered_to_bob + bob.raw)
    assert sorted(sorted(options) for options in handler.mail_options) == [
        ["BODY=8BITMIME", f"SIZE={len(ann.raw)}"],
        [f"SIZE={len(bob.raw)}", "SMTPUTF8"],
    ]


def test_a_utf8_address_without_smtputf8_is_permanent_for_that_message(tmp_path: Path) -> None:
    with smtp_server(tmp_path / "maildir", enable_SMTPUTF8=False) as (handler, port):
        mailer = SmtpMailer("127.0.0.1", port)
        ann, bob = campaign_emails(["Ann", "Bob"])
        results = mailer.send([replace(ann, recipient="jürgen@example.com"), bob])
        mailer.close()
    assert [r.status for r in results] == ["permanent", "sent"]
    assert results[0].detail.startswith("553 5.6.7")
    assert handler.message_ids() == {bob.message_id: 1}


def test_a_line_break_in_an_address_injects_no_command(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    """Bob's address carries an extra RCPT (his transaction begun with Ann's data, when
    pipelining): the envelope takes the address alone, and the chunk goes on, promptly."""
    emails = campaign_emails(["Ann", "Bob", "Cy"])
    emails[1] = replace(emails[1], recipient="bob@example.com\r\nRCPT TO:<eve@example.com>")
    started = time.monotonic()
    assert [r.status for r in mailer.send(emails)] == ["sent", "sent", "sent"]
    assert time.monotonic() - started < 10, "no wait for a server stuck in DATA"
    delivered = [str(m["Delivered-To"]) for m in handler.messages()]
    assert sorted(delivered) == ["bob@example.com", "reader0@example.com", "reader2@example.com"]
    assert handler.connections == 1


# -- what a real MTA notices: QUIT, the EHLO name, IDNA without SMTPUTF8 ------------------------


def test_close_says_quit_on_every_pooled_connection(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    threads = [threading.Thread(target=mailer.send, args=(campaign_emails(["A"]),))
               for _ in range(2)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    mailer.close()
    deadline = time.monotonic() + 5
    while handler.quits < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (handler.connections, handler.quits) == (2, 2)


def test_the_container_says_quit_when_its_process_stops(
    tmp_path: Path, server: tuple[ScriptedHandler, int]
) -> None:
    handler, port = server
    settings = Settings(data_dir=tmp_path / "var", esp="smtp", smtp_port=port, esp_rate_per_s=100)
    container = Container(settings)
    container.mailer.send(campaign_emails(["Ann"]))
    container.close()
    deadline = time.monotonic() + 5
    while handler.quits < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handler.quits == 1


def test_ehlo_gives_the_configured_name(tmp_path: Path, server: tuple[ScriptedHandler, int]):
    handler, port = server
    environ = {"MAILPIPE_SMTP_HELO_NAME": "mail.mailpipe.example", "SMTP_PORT": str(port),
               "MAILPIPE_DATA_DIR": str(tmp_path / "var")}  # fmt: skip
    mailer = mailer_from_settings(settings_module.load(environ))
    assert [r.status for r in mailer.send(campaign_emails(["Ann"]))] == ["sent"]
    mailer.close()
    assert handler.ehlo_names == ["mail.mailpipe.example"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "no-pipelining"])
def test_an_idn_domain_goes_as_punycode_to_a_server_without_smtputf8(
    tmp_path: Path, pipelining: bool
) -> None:
    idn, ascii_form = "anna@bücher.example", "anna@xn--bcher-kva.example"
    ann, bob, cy = campaign_emails(["Ann", "Bob", "Cy"])
    bob = replace(bob, recipient=idn, raw=bob.raw.replace(bob.recipient.encode(), idn.encode()))
    assert idn.encode() in bob.raw
    with smtp_server(tmp_path / "maildir", pipelining=pipelining, enable_SMTPUTF8=False) as (
        handler,
        port,
    ):
        mailer = SmtpMailer("127.0.0.1", port)
        results = mailer.send([ann, bob, cy])
        mailer.close()
    assert [r.status for r in results] == ["sent", "sent", "sent"]
    assert ascii_form in handler.rcpt_tos
    (stored,) = [m for m in handler.raw_messages() if bob.message_id.encode() in m]
    head = stored.split(b"\r\n\r\n")[0]
    assert f"To: {ascii_form}".encode() in head and "ü".encode() not in head
    assert all(options == [options[0]] for options in handler.mail_options), "no SMTPUTF8"


@pytest.mark.parametrize(
    ("code", "reply", "server_wide"),
    [
        (421, b"4.7.0 Try again later, closing connection", True),
        (451, b"4.7.0 Temporary rate limit exceeded", True),
        (450, b"Too many connections from your IP", True),
        (451, b"4.3.0 Temporary failure, try again", False),
        (450, b"4.2.0 Greylisted, see https://example.org/greylist", False),
        (451, b"4.7.1 Please try again later", False),
        (450, b"4.2.1 The user is receiving mail at a rate that prevents more", False),
        (550, b"5.1.1 No such user", False),
    ],
)
def test_a_server_wide_throttle_is_told_from_a_per_recipient_deferral(
    code: int, reply: bytes, server_wide: bool
) -> None:
    assert is_server_wide(code, reply) is server_wide


def test_a_rate_limit_reply_to_one_rcpt_throttles_and_a_greylisting_one_does_not(
    handler: ScriptedHandler, mailer: SmtpMailer
) -> None:
    handler.rcpt_replies = ["450 4.2.0 Greylisted, try again later"]
    results = mailer.send(campaign_emails(["Ann", "Bob"]))
    assert [r.status for r in results] == ["transient", "sent"]
    assert not results[0].detail.startswith(THROTTLED_PREFIX)
    handler.rcpt_replies = ["451 4.7.0 Temporary rate limit exceeded"]
    with pytest.raises(Throttled):
        mailer.send(campaign_emails(["Cy"], start=2))
