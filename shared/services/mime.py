"""A fast builder for complete multipart/alternative MIME messages.

`email.message.EmailMessage` re-parses and re-folds every header on every message; for a
campaign the structure is always the same, so the message is assembled from strings and the
bodies are quoted-printable encoded by binascii (C). Header values are sanitized (no CR/LF can
reach a header) and non-ASCII text becomes RFC 2047 encoded-words.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

from shared.ports import OutgoingEmail

_CRLF = "\r\n"


_CONTROL_TO_SPACE = {c: " " for c in (*range(32), 127)}


def clean_header_value(value: str) -> str:
    """One line, no control characters: header injection is impossible by construction."""
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


def _qp(text: str) -> str:
    text = str(text)  # a plain str: slicing markupsafe.Markup is slow
    if _QP_SAFE.fullmatch(text):  # tracked URLs, tokens, most names: only line breaks to add
        if len(text) <= _SOFT_LINE:
            return text
        return "=\r\n".join(text[i : i + _SOFT_LINE] for i in range(0, len(text), _SOFT_LINE))
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.decode("ascii").replace("\r\n", "\n").replace("\n", _CRLF)


class FragmentEncoder:
    """Quoted-printable for a body rendered as fragments (what Jinja's `generate` yields).

    A compiled template yields its literal text as the very same string objects in every
    message (`static` holds their ids), so their encoding is computed once and reused; runs of
    personalized fragments are encoded per message. Runs are joined with soft line breaks
    ("=" CRLF), which decoding removes, so every line stays within the 76-character limit.
    """

    def __init__(self) -> None:
        # id -> (the fragment itself, its encoding); holding the fragment keeps the id unique.
        self._cache: dict[int, tuple[str, str]] = {}

    def encode(self, fragments: Iterable[str], static: frozenset[int] = frozenset()) -> str:
        cache = self._cache
        encoded: list[str] = []
        pending: list[str] = []
        for fragment in fragments:
            key = id(fragment)
            if key not in static:
                pending.append(fragment)
                continue
            if pending:
                encoded.append(_qp_run(pending))
                pending.clear()
            hit = cache.get(key)
            if hit is None or hit[0] is not fragment:
                hit = cache[key] = (fragment, _qp(fragment))
            encoded.append(hit[1])
        if pending:
            encoded.append(_qp_run(pending))
        return "=\r\n".join(filter(None, encoded))


def _qp_run(fragments: list[str]) -> str:
    """A run of personalized fragments; short safe ones (names, numbers) encode as themselves."""
    text = fragments[0] if len(fragments) == 1 else "".join(fragments)
    if len(text) <= _SOFT_LINE and _QP_SAFE.fullmatch(text):
        return str(text)
    return _qp(text)


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
    html_qp: str | None = None,
    text_qp: str | None = None,
) -> bytes:
    """The complete message with CRLF line endings, ready for SMTP or a raw-MIME API.
    `html_qp`/`text_qp` are the bodies already quoted-printable encoded (FragmentEncoder)."""
    # A boundary starting with "=_" can never occur inside quoted-printable content.
    boundary = "=_mp_" + hashlib.sha1(message_id.encode()).hexdigest()[:24]
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
        "Content-Transfer-Encoding: quoted-printable",
        "",
        text_qp if text_qp is not None else _qp(text),
        f"--{boundary}",
        'Content-Type: text/html; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        html_qp if html_qp is not None else _qp(html),
        f"--{boundary}--",
        "",
    ]
    return _CRLF.join(lines).encode("utf-8")


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
    boundary and decode the quoted-printable parts. Send batches carry only the raw message;
    providers that take the parts (SendGrid, Mailgun batches) get them back this way."""
    head, _, body = raw.partition(b"\r\n\r\n")
    marker = b'boundary="'
    start = head.index(marker) + len(marker)
    boundary = b"--" + head[start : head.index(b'"', start)]
    parts = body.split(boundary)
    decoded = [_decode_part(p) for p in parts[1:-1]]
    return decoded[0], decoded[1]


def _decode_part(part: bytes) -> str:
    _, _, content = part.partition(b"\r\n\r\n")
    if content.endswith(b"\r\n"):
        content = content[:-2]  # the CRLF before the next boundary belongs to the boundary
    return binascii.a2b_qp(content).decode("utf-8").replace("\r\n", "\n")
