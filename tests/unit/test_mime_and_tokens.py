"""The MIME builder and signed tokens: injection-proof headers, round trips, tamper detection."""

from __future__ import annotations

import binascii
import email
import email.policy
import html

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain import tokens
from shared.domain.errors import InvalidToken
from shared.services.mime import FragmentEncoder, RenderedBody, build_message, extract_bodies


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
    # HTML travels 7-bit: non-ASCII characters as character references, the same document.
    assert html.unescape(message.get_body(("html",)).get_content()) == "<p>Grüße</p>"
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


def _parts(raw: bytes) -> dict[str, tuple[str, str]]:
    """content type -> (Content-Transfer-Encoding, decoded content with LF line ends)."""
    message = parse(raw)
    return {
        part.get_content_type(): (
            part["Content-Transfer-Encoding"],
            part.get_content().replace("\r\n", "\n"),
        )
        for part in message.iter_parts()
    }


def _build(html_body: str, text_body: str, message_id: str = "m@example.com") -> bytes:
    return build_message(sender="a@example.com", recipient="b@example.com", subject="s",
                         message_id=message_id, html=html_body, text=text_body)  # fmt: skip


def test_ascii_bodies_travel_as_7bit_unchanged():
    parts = _parts(_build('<p a="1">Hi</p>\n', "Hi = there\n"))
    assert parts["text/html"] == ("7bit", '<p a="1">Hi</p>\n')
    assert parts["text/plain"] == ("7bit", "Hi = there\n")


def test_non_ascii_html_becomes_character_references_and_text_quoted_printable():
    parts = _parts(_build("<p>Grüße · 東京</p>\n", "Grüße\n"))
    cte, content = parts["text/html"]
    assert cte == "7bit" and content.isascii()
    assert html.unescape(content) == "<p>Grüße · 東京</p>\n"
    assert parts["text/plain"] == ("quoted-printable", "Grüße\n")


@pytest.mark.parametrize(
    "body",
    [
        "<style>p:before{content:'→'}</style><p>ü</p>\n",  # references are not decoded there
        "<p>" + "x" * 999 + "</p>\n",  # a line over RFC 5322's 998 octets
        "<p>a\rb</p>\n",  # a bare CR
    ],
)
def test_bodies_that_cannot_be_7bit_are_quoted_printable_and_exact(body):
    raw = _build(body, "t\n")
    assert _parts(raw)["text/html"] == ("quoted-printable", body)
    assert all(len(line) <= 76 for line in _html_lines(raw))


def test_a_body_containing_the_boundary_is_quoted_printable():
    raw = _build("x", "x")
    boundary = raw.split(b'boundary="')[1].split(b'"')[0].decode()
    evil = f"<p>\n--{boundary}--\n</p>\n"
    assert _parts(_build(evil, "t\n"))["text/html"] == ("quoted-printable", evil)


def _html_lines(raw: bytes) -> list[bytes]:
    html_part = raw.split(b"Content-Type: text/html")[1].split(b"\r\n\r\n", 1)[1]
    return html_part.split(b"\r\n")[:-2]


def test_extract_bodies_reads_both_transfer_encodings():
    raw = _build("<p>ü and = sign</p>\n", "ü and = sign\n")
    text, html_body = extract_bodies(raw)
    assert text == "ü and = sign\n"
    assert html.unescape(html_body) == "<p>ü and = sign</p>\n"


fragments = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz/:.?=&-_", min_size=60, max_size=300),
    ),
    max_size=30,
)


@given(fragments)
def test_fragment_encoding_decodes_to_the_joined_fragments(parts):
    static = frozenset(id(p) for p in parts[::2])
    encoder = FragmentEncoder(static)
    for _ in range(2):  # the second time from the cache
        encoded = RenderedBody("".join(parts), parts, encoder).quoted_printable()
        expected = "".join(parts).replace("\r\n", "\n")
        decoded = binascii.a2b_qp(encoded.encode("ascii")).decode("utf-8")
        assert decoded.replace("\r\n", "\n") == expected
        assert all(len(line) <= 76 for line in encoded.split("\r\n"))
