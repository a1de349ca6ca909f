"""Dead letters as a person reads them (the `mailpipe dlq` CLI and the console)."""

from __future__ import annotations

import base64
import json

from shared.domain.errors import InvalidInput
from shared.domain.messages import ZLIB_JSON, ZSTD_JSON, decompress_batch
from shared.ports import DeadLetter

MAX_SHOWN = 20_000


def readable_payload(letter: DeadLetter) -> str:
    """The payload as a person can read it: JSON pretty-printed (for a compressed send batch,
    its JSON header line: the batch and its messages), otherwise base64."""
    data = letter.data
    try:
        if letter.attributes.get("encoding") in (ZLIB_JSON, ZSTD_JSON):
            data = decompress_batch(data).partition(b"\n")[0]
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)[:MAX_SHOWN]
    except (ValueError, InvalidInput):
        return base64.b64encode(letter.data).decode()[:MAX_SHOWN]
