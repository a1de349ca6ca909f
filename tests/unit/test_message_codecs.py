"""Wire encodings of the campaign's hot messages: send batches (Zstandard, and the zlib of
batches published before it) and render requests (JSON without dataclasses' deep copy)."""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict

import pytest

from shared.domain.errors import InvalidInput
from shared.domain.messages import (
    MARKETING,
    Recipient,
    RenderRequest,
    SendBatch,
    decompress_batch,
    to_json,
)
from shared.ports import OutgoingEmail


def batch(count: int = 40) -> SendBatch:
    emails = [
        OutgoingEmail(
            message_id=f"m{i}@mailpipe.test",
            sender="Mailpipe <hello@mailpipe.test>",
            recipient=f"reader{i}@example.com",
            subject="Spring",
            html="",
            text="",
            headers={"List-Unsubscribe": f"<https://mailpipe.test/u/{i}>"},
            raw=b"Subject: Spring\r\n\r\n"
            + b"same newsletter body \xe2\x82\xac " * 300
            + str(i).encode()
            + b"\xff",  # any bytes, not only UTF-8
            subscriber_id=f"s{i:04d}",
            campaign_id="c1",
        )
        for i in range(count)
    ]
    return SendBatch("c1:all:000001", MARKETING, 1.8e9, emails, "c1", "A")


def test_a_send_batch_survives_the_round_trip_and_compresses_well() -> None:
    original = batch()
    encoded = original.encode()

    assert SendBatch.decode(encoded) == original
    assert len(encoded) * 20 < sum(len(e.raw) for e in original.emails)


def test_a_zlib_batch_published_before_zstandard_still_decodes() -> None:
    original = batch(3)
    older = zlib.compress(decompress_batch(original.encode()), 1)

    assert SendBatch.decode(older) == original


@pytest.mark.parametrize("data", [b"not compressed", b"\x28\xb5\x2f\xfd broken frame"])
def test_bytes_that_are_no_batch_are_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="send batch"):
        SendBatch.decode(data)


def test_a_batch_shorter_than_its_header_says_is_invalid_input() -> None:
    plain = decompress_batch(batch(2).encode())
    with pytest.raises(InvalidInput, match="shorter"):
        SendBatch.decode(zlib.compress(plain[:-10]))


def test_a_render_request_encodes_as_its_fields_and_decodes_back() -> None:
    recipients = [
        Recipient("s1", "ann@example.com", "Ann", {"attributes": {"city": "Oslo", "n": [1]}}),
        Recipient("s2", "bo@example.com", tracking=False),
    ]
    request = RenderRequest("c1:test:000001:A", "newsletter", MARKETING, 1.8e9, recipients,
                            campaign_id="c1", variant="A", context={"issue": 7})  # fmt: skip

    assert request.to_doc() == asdict(request)
    assert json.loads(request.encode()) == json.loads(to_json(asdict(request)))
    assert RenderRequest.decode(request.encode()) == request
