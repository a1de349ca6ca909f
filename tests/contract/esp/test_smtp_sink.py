"""The local SMTP sink over real SMTP conversations: what it stores (byte for byte, as /inbox
reads it), what it offers and refuses, and pipelined groups (the mailer's SmtpConnection, and
raw commands)."""

from __future__ import annotations

import mailbox
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port

from shared.adapters.esp.smtp_connection import SmtpConnection
from shared.adapters.local.maildir_mail import MaildirMail
from shared.runner.inbox import list_messages
from shared.runner.smtp_sink import SmtpSink

SENDER = "news@mailpipe.test"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    sink = SmtpSink(tmp_path / "mail", port=free_port(), data_size_limit=64 * 1024).start()
    yield sink
    sink.stop()


def message(n: int, body: bytes, recipient: str = "reader@example.com") -> bytes:
    head = f"From: {SENDER}\r\nTo: {recipient}\r\nMessage-ID: <m{n}@mailpipe.test>\r\n"
    return head.encode() + b"Subject: test\r\n\r\n" + body


BODIES = {
    "long lines": (b"x" * 998 + b"\r\n") * 3 + b"end\r\n",
    "dot lines": b".\r\n..\r\n.hidden\r\n. .\r\nx.\r\n\r\n.\r\n",
    "8-bit": "Grüße aus Köln, ça va? 日本語\r\n".encode() * 40,
    "no final CRLF": b"last line",
}


def stored(sink: SmtpSink) -> dict[str, bytes]:
    """Message-ID -> the stored file's bytes."""
    box = mailbox.Maildir(str(sink.maildir), create=False)
    files = [box.get_bytes(key) for key in box.iterkeys()]
    return {str(mailbox.MaildirMessage(raw)["Message-ID"]): raw for raw in files}


def expected_file(msg: bytes, recipient: str = "reader@example.com") -> bytes:
    msg += b"" if msg.endswith(b"\r\n") else b"\r\n"  # SMTP sends whole lines
    return f"Return-Path: <{SENDER}>\r\nDelivered-To: {recipient}\r\n".encode() + msg


@pytest.mark.parametrize("client", ["pipelined", "smtplib"])
def test_every_message_is_stored_byte_for_byte(sink: SmtpSink, client: str) -> None:
    messages = [message(n, body) for n, body in enumerate(BODIES.values())]
    if client == "pipelined":  # one round trip each: the next message begun with this one
        with SmtpConnection("127.0.0.1", sink.port) as conn:
            for this, then in zip(messages, [*messages[1:], None], strict=True):
                following = None if then is None else (SENDER, "reader@example.com", then)
                conn.send_one(SENDER, "reader@example.com", this, then=following)
    else:
        with smtplib.SMTP("127.0.0.1", sink.port) as conn:
            for msg in messages:
                conn.sendmail(SENDER, ["reader@example.com"], msg, ["BODY=8BITMIME"])
    files = stored(sink)
    assert files == {f"<m{n}@mailpipe.test>": expected_file(m) for n, m in enumerate(messages)}
    assert sink.handler.received == len(messages)


def test_the_inbox_and_the_mail_search_read_what_the_sink_stored(sink: SmtpSink) -> None:
    recipient = "jürgen@example.com"  # sent with SMTPUTF8
    sent = message(1, BODIES["8-bit"], recipient)
    with SmtpConnection("127.0.0.1", sink.port) as conn:
        conn.send_one(SENDER, recipient, sent)
    (listed,) = list_messages(sink.maildir)
    assert (listed["to"], listed["message_id"]) == (recipient, "<m1@mailpipe.test>")
    (found,) = MaildirMail(sink.maildir).messages_to("JÜRGEN@example.com")
    assert found["raw"] == expected_file(sent, recipient).decode()


def test_it_offers_pipelining_8bitmime_smtputf8_and_its_size(sink: SmtpSink) -> None:
    with smtplib.SMTP("127.0.0.1", sink.port) as conn:
        conn.ehlo()
        assert all(conn.has_extn(x) for x in ("pipelining", "8bitmime", "smtputf8"))
        assert conn.esmtp_features["size"] == str(64 * 1024)
        assert conn.docmd("HELP", "DATA") == (250, b"Syntax: DATA")
        assert conn.docmd("HELP", "MAIL")[1].startswith(b"Syntax: MAIL FROM: <address> [SP")


def test_refusals_come_after_the_data_and_the_connection_goes_on(sink: SmtpSink) -> None:
    with smtplib.SMTP("127.0.0.1", sink.port) as conn:
        for body, code in [(b"y" * 1000 + b"\r\n", 500), ((b"z" * 98 + b"\r\n") * 700, 552)]:
            conn.ehlo_or_helo_if_needed()
            conn.mail(SENDER)  # no SIZE: the size is found in the data
            conn.rcpt("reader@example.com")
            assert conn.data(message(1, body))[0] == code
        for local, code in [("bounce-ann", 550), ("throttle-bob", 421)]:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as rcpt:
                conn.sendmail(SENDER, [f"{local}@example.com"], message(2, b"hi\r\n"))
            assert rcpt.value.recipients[f"{local}@example.com"][0] == code
            if code == 421:  # smtplib closes on 421
                conn.connect("127.0.0.1", sink.port)
                conn.ehlo()
        conn.sendmail(SENDER, ["reader@example.com"], message(3, b"fine\r\n"))
    assert list(stored(sink)) == ["<m3@mailpipe.test>"]


def test_a_pipelined_group_and_a_quit_after_the_data_get_every_reply(sink: SmtpSink) -> None:
    """The replies the sink holds back to send together are all sent, the last one before a
    QUIT closes the connection."""
    with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as raw:
        replies = raw.makefile("rb")
        assert replies.readline().startswith(b"220")
        raw.sendall(b"EHLO client\r\n")
        while not replies.readline().startswith(b"250 "):
            pass
        raw.sendall(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        assert [replies.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        raw.sendall(b"Subject: s\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
        assert replies.readline() == b"250 Message accepted for delivery\r\n"
        assert replies.readline().startswith(b"221")
        assert replies.readline() == b"", "then the sink closes the connection"
    (path,) = (sink.maildir / "new").iterdir()
    assert path.read_bytes().endswith(b"Delivered-To: b@x.test\r\nSubject: s\r\n\r\n.dot\r\n")


def test_a_connection_refuses_to_send_other_than_the_begun_message(sink: SmtpSink) -> None:
    """The begun transaction's replies must not be taken for another message's: the
    connection closes (aborting it) and says so; nothing is stored for it."""
    first, second, third = (message(n, b"hi\r\n") for n in range(3))
    conn = SmtpConnection("127.0.0.1", sink.port)
    conn.send_one(SENDER, "reader@example.com", first, then=(SENDER, "b@example.com", second))
    assert conn.next_begun
    with pytest.raises(smtplib.SMTPServerDisconnected, match="different transaction"):
        conn.send_one(SENDER, "reader@example.com", third)
    assert conn.sock is None and not conn.next_begun
    conn.connect("127.0.0.1", sink.port)
    conn.send_one(SENDER, "reader@example.com", third)
    conn.quit()
    assert sorted(stored(sink)) == ["<m0@mailpipe.test>", "<m2@mailpipe.test>"]
