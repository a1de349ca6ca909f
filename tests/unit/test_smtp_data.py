"""The sink's DATA reader, the mailer's dot-stuffing and the sink's address fast path, each
against the implementation it replaces (aiosmtpd's line reader and parser, smtplib's quoting).
The reader runs on a real asyncio StreamReader with aiosmtpd's line limit, fed in pieces."""

from __future__ import annotations

import asyncio
import smtplib

import pytest
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.esp.smtp_connection import dot_stuffed
from shared.runner.sink_smtp import SinkSMTP
from shared.runner.smtp_data import TOO_LONG, TOO_MUCH, DataSection, read_section

LINE_LIMIT = SMTP.line_length_limit  # 1001: 998 octets + CRLF + a transparency dot


def read(
    stream: bytes, piece: int = 1 << 20, size_limit: int | None = None
) -> tuple[bytes | None, str | None, bytes]:
    """(content, refusal, what is left in the stream) for `stream` fed `piece` bytes at a time
    while the section is being read."""

    async def run() -> tuple[bytes | None, str | None, bytes]:
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        section = DataSection(size_limit, LINE_LIMIT)

        async def feed() -> None:
            for start in range(0, len(stream), piece):
                reader.feed_data(stream[start : start + piece])
                await asyncio.sleep(0)
            reader.feed_eof()

        feeding = asyncio.create_task(feed())
        await read_section(reader, section)
        await feeding
        return section.content(), section.refusal, await reader.read()

    return asyncio.run(run())


def message_lines() -> st.SearchStrategy[bytes]:
    """Messages as mailers send them: CRLF lines, some starting with dots, some empty, some
    8-bit, some near the 998-octet limit."""
    line = st.one_of(
        st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
        st.sampled_from([b"", b".", b"..", b".x", b"\xc3\xa9t\xc3\xa9", b"x" * 998, b". ."]),
    )
    return st.lists(line, max_size=30).map(lambda lines: b"".join(x + b"\r\n" for x in lines))


@settings(deadline=None, max_examples=60)
@given(message_lines(), st.integers(min_value=1, max_value=300))
def test_a_dot_stuffed_message_reads_back_byte_for_byte(message: bytes, piece: int) -> None:
    content, refusal, rest = read(dot_stuffed(message) + b"MAIL FROM:<next@x>\r\n", piece)
    assert (content, refusal) == (message or b"\r\n", None)  # smtplib sends b"" as one line
    assert rest == b"MAIL FROM:<next@x>\r\n", "nothing past the end of DATA is read"


@pytest.mark.parametrize(
    ("stream", "content"),
    [
        (b".\r\n", b""),
        (b"\r\n.\r\n", b"\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"\r\n\r\n..x\r\n.\r\n", b"\r\n\r\n.x\r\n"),
        (b"a\rb\nc\r\n.\r\n", b"a\rb\nc\r\n"),  # bare CR and LF are data, as in aiosmtpd
        (b"\r\r\n.\r\n", b"\r\r\n"),
        (b".\r\r\n.\r\n", b"\r\r\n"),
        (b"x.\r\n.\r\n", b"x.\r\n"),
    ],
)
def test_the_first_line_and_odd_line_ends(stream: bytes, content: bytes) -> None:
    assert read(stream, piece=1)[:2] == (content, None)
    assert read(stream)[:2] == (content, None)


def test_a_line_over_998_octets_is_refused_once_all_is_read() -> None:
    longest = b"." + b"x" * 998 + b"\r\n"  # 998 octets, dot-stuffed: accepted
    assert read(longest + b".\r\n")[:2] == (b"x" * 998 + b"\r\n", None)
    content, refusal, rest = read(b"ok\r\n" + b"y" * 1000 + b"\r\nok\r\n.\r\nQUIT\r\n", 64)
    assert (content, refusal, rest) == (None, TOO_LONG, b"QUIT\r\n")


def test_too_much_data_is_refused_once_all_is_read() -> None:
    message = b"z" * 98 + b"\r\n"
    assert read(message + b".\r\n", size_limit=100)[:2] == (message, None)
    content, refusal, rest = read(message * 50 + b".\r\nQUIT\r\n", 128, size_limit=100)
    assert (content, refusal, rest) == (None, TOO_MUCH, b"QUIT\r\n")


@given(st.binary(max_size=300))
def test_dot_stuffing_is_smtplibs(message: bytes) -> None:
    quoted = smtplib._quote_periods(message)  # what smtplib.SMTP.data sends
    quoted += b"" if quoted.endswith(b"\r\n") else b"\r\n"
    assert dot_stuffed(message) == quoted + b".\r\n"


@pytest.mark.parametrize(
    "arg",
    [
        "<a@b.c>",
        "<news@mailpipe.test> SIZE=18000 BODY=8BITMIME",
        "<a.b+c_d!#$%&'*/=?^`{|}~-e@sub-1.example.com>  SMTPUTF8 ",
        "<a@b.c>\tX=1",
        "<a@b.c>(comment) X=1",
        "<a@b.c>X=1",
        " <a@b.c>",
        "a@b.c",
        "<>",
        "<a..b@c.d>",
        "<.a@b.c>",
        '<"q u"@b.c>',
        "<a@[1.2.3.4]>",
        "<jürgen@example.com>",
        "<a@b..c>",
        "<a@b.c",
    ],
)
def test_addresses_parse_as_aiosmtpd_parses_them(arg: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        ours, theirs = SinkSMTP(Sink(), loop=loop), SMTP(Sink(), loop=loop)
        assert ours._getaddr(arg) == theirs._getaddr(arg)
    finally:
        loop.close()
