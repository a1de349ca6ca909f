"""A fast builder for complete multipart/alternative MIME messages.

`email.message.EmailMessage` re-parses and re-folds every header on every message; for a
campaign the structure is always the same, so the message is assembled from strings. A body
travels as 7bit when it can (HTML after its non-ASCII characters become character references),
else as quoted-printable assembled from cached encodings of the template's fragments. Header
values are sanitized (no CR/LF can reach a header) and non-ASCII text becomes RFC 2047
encoded-words.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

from shared.ports import OutgoingEmail

_CRLF = "\r\n"


_CONTROL_TO_SPACE = {c: " " for c in (*range(32), 127)}


def clean_header_value(value: str) -> str:
    """One line, no control characters: header injection is impossible by construction."""
    if value.isascii() and value.isprintable() and "  " not in value and value[-1:] != " ":
        return value if value[:1] != " " else value.lstrip()  # the common case: nothing to do
    cleaned = value.translate(_CONTROL_TO_SPACE)
    return " ".join(cleaned.split()) if "  " in cleaned or cleaned != cleaned.strip() else cleaned


def encode_header(value: str) -> str:
    value = clean_header_value(value)
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=998).encode()


@functools.lru_cache(maxsize=1024)
def format_address(address: str) -> str:
    """`Name <addr>` with the display name encoded when needed; the address part is checked."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return address  # the common case: a bare, already validated ASCII address
    name, addr = parseaddr(clean_header_value(address))
    if not addr or "@" not in addr:
        raise ValueError(f"not an address: {address!r}")
    if addr.isascii():
        return formataddr((name, addr), charset="utf-8")
    # An internationalized mailbox (RFC 6532): the address stays UTF-8, sent with SMTPUTF8.
    return f"{encode_header(name)} <{addr}>" if name else f"<{addr}>"


_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_QP_SAFE = re.compile(r"[\x21-\x3c\x3e-\x7e]*")  # printable ASCII but "=": encodes as itself
_SOFT_LINE = 75
_MAX_LINE = 998  # RFC 5322 2.1.1: no line may be longer, in any encoding
_SEVEN_BIT, _QUOTED_PRINTABLE = "7bit", "quoted-printable"
# Character references are not decoded inside these elements: their text must stay as it is.
_RAW_TEXT_ELEMENT = re.compile(r"<(?:style|script)\b", re.IGNORECASE)


def _qp(text: str) -> str:
    text = str(text)  # a plain str: slicing markupsafe.Markup is slow
    if _QP_SAFE.fullmatch(text):  # tracked URLs, tokens, most names: only line breaks to add
        if len(text) <= _SOFT_LINE:
            return text
        return "=\r\n".join(text[i : i + _SOFT_LINE] for i in range(0, len(text), _SOFT_LINE))
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return _room_for_soft_break(encoded.decode("ascii").replace("\r\n", "\n").replace("\n", _CRLF))


def _room_for_soft_break(encoded: str) -> str:
    """Fragments are joined with a soft break ("=" CRLF), so an encoding's last line may hold
    75 characters at most; binascii fills lines to 76. Never cuts inside an "=XX" escape."""
    start = encoded.rfind("\n") + 1
    if len(encoded) - start <= _SOFT_LINE:
        return encoded
    cut = start + _SOFT_LINE
    if encoded[cut - 1] == "=":
        cut -= 1
    elif encoded[cut - 2] == "=":
        cut -= 2
    return f"{encoded[:cut]}=\r\n{encoded[cut:]}"


_SHORT_FRAGMENT = 64  # names, cities, numbers: worth remembering; tracked links are not
_CACHE_LIMIT = 4096


class FragmentEncoder(dict[str, str]):
    """Quoted-printable for a body rendered as fragments (what Jinja's `generate` yields), one
    encoder per compiled template.

    The template's literal text (`static`: the ids of its string constants) is encoded once and
    looked up by value afterwards, as are short personalized values, which repeat across a
    campaign; long unique fragments (tracked links) are encoded each time. Fragments are joined
    with soft line breaks ("=" CRLF), which decoding removes, so each is encoded on its own and
    every line stays within the 76-character limit. The lookups run in C (`map` over the
    dict's own `__getitem__`): a newsletter yields a hundred fragments or more per message.
    """

    def __init__(self, static: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self._static = static

    def __missing__(self, fragment: str) -> str:
        encoded = _qp(fragment)
        if id(fragment) in self._static or (
            len(fragment) <= _SHORT_FRAGMENT and len(self) < _CACHE_LIMIT
        ):
            self[fragment] = encoded
        return encoded

    def encode(self, fragments: Iterable[str]) -> str:
        return "=\r\n".join(map(self.__getitem__, fragments))


@dataclass(frozen=True, slots=True)
class RenderedBody:
    """A body part as rendered: its text, and (for the quoted-printable fallback) the fragments
    the template yielded with the encoder that knows the template's literal text."""

    text: str
    fragments: Sequence[str] | None = None
    encoder: FragmentEncoder | None = None

    def quoted_printable(self) -> str:
        if self.fragments is not None and self.encoder is not None:
            return self.encoder.encode(self.fragments)
        return _qp(self.text)


def _encoded_part(body: RenderedBody, boundary: str, html: bool) -> tuple[str, str]:
    """(Content-Transfer-Encoding, the encoded body). 7bit when the body allows it, as most
    rendered mail does: no encoding work, and fewer, shorter lines for every MTA on the way.
    HTML becomes 7-bit by writing non-ASCII characters as numeric character references (the
    same document). Anything else is quoted-printable, never 8bit: not every hop has 8BITMIME."""
    text = html_as_sent(body.text) if html else body.text
    if _is_7bit_clean(text, boundary):
        return _SEVEN_BIT, text.replace("\n", _CRLF)
    return _QUOTED_PRINTABLE, body.quoted_printable()


def html_as_sent(html: str) -> str:
    """The same document with its non-ASCII characters as numeric character references, where
    that keeps it the same (not inside <style> or <script>, whose text is not decoded)."""
    if html.isascii() or _RAW_TEXT_ELEMENT.search(html):
        return html
    return html.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _is_7bit_clean(text: str, boundary: str) -> bool:
    """RFC 2045 7bit data: ASCII, no NUL, CR only in CRLF (here: none, LF becomes CRLF), lines
    of at most 998 octets; and the part's boundary must not occur in it."""
    if not text.isascii() or "\r" in text or "\0" in text or boundary in text:
        return False
    return max(map(len, text.split("\n"))) <= _MAX_LINE


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    message_id: str,
    html: str | RenderedBody,
    text: str | RenderedBody,
    headers: Mapping[str, str] = {},
    date: float | None = None,
) -> bytes:
    """The complete message with CRLF line endings, ready for SMTP or a raw-MIME API."""
    # A boundary starting with "=_" never occurs in quoted-printable content (7bit: checked).
    boundary = "=_mp_" + hashlib.sha1(message_id.encode()).hexdigest()[:24]
    text_cte, text_body = _encoded_part(_as_body(text), boundary, html=False)
    html_cte, html_body = _encoded_part(_as_body(html), boundary, html=True)
    lines = [
        f"From: {format_address(sender)}",
        f"To: {format_address(recipient)}",
        f"Subject: {encode_header(subject)}",
        f"Date: {_date_header(int(date if date is not None else time.time()))}",
        f"Message-ID: <{clean_header_value(message_id)}>",
        "MIME-Version: 1.0",
    ]
    lines += [f"{clean_header_value(k)}: {encode_header(v)}" for k, v in headers.items()]
    lines += [
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="utf-8"',
        f"Content-Transfer-Encoding: {text_cte}",
        "",
        text_body,
        f"--{boundary}",
        'Content-Type: text/html; charset="utf-8"',
        f"Content-Transfer-Encoding: {html_cte}",
        "",
        html_body,
        f"--{boundary}--",
        "",
    ]
    return _CRLF.join(lines).encode("utf-8")


def _as_body(body: str | RenderedBody) -> RenderedBody:
    return body if isinstance(body, RenderedBody) else RenderedBody(body)


@functools.lru_cache(maxsize=4)
def _date_header(second: int) -> str:
    return formatdate(second, usegmt=True)


def html_and_text(email: OutgoingEmail) -> tuple[str, str]:
    """The message's HTML and text parts, taken from the raw message when the batch on the
    wire carried only that (see SendBatch.encode)."""
    if email.html or email.text:
        return email.html, email.text
    text, html = extract_bodies(email.raw)
    return html, text


def extract_bodies(raw: bytes) -> tuple[str, str]:
    """(text, html) of a message `build_message` made, without a MIME parser: split on its
    boundary and decode each part by its transfer encoding. Send batches carry only the raw
    message; providers that take the parts (SendGrid, Mailgun batches) get them back this way."""
    head, _, body = raw.partition(b"\r\n\r\n")
    marker = b'boundary="'
    start = head.index(marker) + len(marker)
    boundary = b"--" + head[start : head.index(b'"', start)]
    parts = body.split(boundary)
    decoded = [_decode_part(p) for p in parts[1:-1]]
    return decoded[0], decoded[1]


def _decode_part(part: bytes) -> str:
    part_headers, _, content = part.partition(b"\r\n\r\n")
    if content.endswith(b"\r\n"):
        content = content[:-2]  # the CRLF before the next boundary belongs to the boundary
    if b"quoted-printable" in part_headers.lower():
        content = binascii.a2b_qp(content)
    return content.decode("utf-8").replace("\r\n", "\n")
