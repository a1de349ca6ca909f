"""The MIME builder and signed tokens: injection-proof headers, round trips, tamper detection."""

from __future__ import annotations

import email
import email.policy

import pytest

from shared.domain import tokens
from shared.domain.errors import InvalidToken
from shared.services.mime import build_message


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_message_round_trips_with_both_parts_and_utf8():
    raw = build_message(
        sender="Zoë Shop <shop@example.com>",
        recipient="Zoë <zoe@example.com>",
        subject="Grüße, Zoë",
        message_id="abc@example.com",
        html="<p>Grüße</p>",
        text="Grüße\n" + "long line " * 30,
        headers={"List-Unsubscribe": "<https://u.example/?t=1>"},
    )
    message = parse(raw)
    assert message["Subject"] == "Grüße, Zoë"
    assert message["To"].addresses[0].display_name == "Zoë"
    assert message["Message-ID"] == "<abc@example.com>"
    assert message.get_body(("html",)).get_content() == "<p>Grüße</p>"
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Grüße\nlong line")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only, as SMTP wants


@pytest.mark.parametrize("field", ["subject", "recipient", "sender", "header"])
def test_no_header_injection_through_any_field(field):
    evil = "x@example.com\r\nBcc: victim@example.com"
    values = {
        "sender": "a@example.com",
        "recipient": "b@example.com",
        "subject": "Hello",
        "headers": {},
    }
    if field == "header":
        values["headers"] = {"X-Campaign": evil}
    else:
        values[field] = evil
    message = parse(build_message(message_id="m@x", html="<p/>", text="t", **values))
    assert message["Bcc"] is None


def test_tokens_verify_and_refuse_tampering():
    token = tokens.sign("key", "click", {"u": "https://example.com"})
    assert tokens.verify("key", "click", token) == {"u": "https://example.com"}
    body, mac = token.split(".")
    with pytest.raises(InvalidToken):
        tokens.verify("key", "open", token)  # another purpose
    with pytest.raises(InvalidToken):
        tokens.verify("other-key", "click", token)
    with pytest.raises(InvalidToken):
        tokens.verify("key", "click", body[:-2] + "xx." + mac)
    with pytest.raises(InvalidToken):
        tokens.verify("key", "click", "garbage")


def test_random_tokens_have_at_least_128_bits():
    token = tokens.random_token()
    assert len(token) * 6 >= 128 and token != tokens.random_token()
