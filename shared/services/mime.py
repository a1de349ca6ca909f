"""A fast builder for complete multipart/alternative MIME messages.

`email.message.EmailMessage` re-parses and re-folds every header on every message; for a
campaign the structure is always the same, so the message is assembled from strings and the
bodies are quoted-printable encoded by binascii (C). Header values are sanitized (no CR/LF can
reach a header) and non-ASCII text becomes RFC 2047 encoded-words.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Mapping
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

_CRLF = "\r\n"


def clean_header_value(value: str) -> str:
    """One line, no control characters: header injection is impossible by construction."""
    return " ".join("".join(c if c >= " " or c == "\t" else " " for c in value).split())


def encode_header(value: str) -> str:
    value = clean_header_value(value)
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=998).encode()


def format_address(address: str) -> str:
    """`Name <addr>` with the display name encoded when needed; the address part is checked."""
    name, addr = parseaddr(clean_header_value(address))
    if not addr or "@" not in addr:
        raise ValueError(f"not an address: {address!r}")
    return formataddr((name, addr), charset="utf-8")


def _qp(text: str) -> str:
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.decode("ascii").replace("\r\n", "\n").replace("\n", _CRLF)


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    message_id: str,
    html: str,
    text: str,
    headers: Mapping[str, str] = {},
    date: float | None = None,
) -> bytes:
    """The complete message with CRLF line endings, ready for SMTP or a raw-MIME API."""
    # A boundary starting with "=_" can never occur inside quoted-printable content.
    boundary = "=_mp_" + hashlib.sha1(message_id.encode()).hexdigest()[:24]
    lines = [
        f"From: {format_address(sender)}",
        f"To: {format_address(recipient)}",
        f"Subject: {encode_header(subject)}",
        f"Date: {formatdate(date, usegmt=True)}",
        f"Message-ID: <{clean_header_value(message_id)}>",
        "MIME-Version: 1.0",
    ]
    lines += [f"{clean_header_value(k)}: {encode_header(v)}" for k, v in headers.items()]
    lines += [
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _qp(text),
        f"--{boundary}",
        'Content-Type: text/html; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _qp(html),
        f"--{boundary}--",
        "",
    ]
    return _CRLF.join(lines).encode("ascii")
