"""LocalWebhook: feedback in Mailpipe's own normalized shape, signed with HMAC-SHA256.

Used by the local runner's simulator and by operators importing feedback from systems that
have no webhook format of their own. Headers: `X-Mailpipe-Timestamp` (unix seconds) and
`X-Mailpipe-Signature` = hex HMAC-SHA256(signing key, timestamp + "." + raw body).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shared.adapters.esp.webhook_verification import epoch_seconds, header, json_body, require_fresh
from shared.domain.errors import InvalidInput, Unauthorized
from shared.domain.feedback import FeedbackEvent


def sign(key: str, timestamp: str, body: bytes) -> str:
    return hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class LocalWebhook:
    name = "local"

    def __init__(self, signing_key: str) -> None:
        self._key = signing_key

    def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> list[FeedbackEvent]:
        timestamp = header(headers, "X-Mailpipe-Timestamp")
        signature = header(headers, "X-Mailpipe-Signature")
        if not timestamp or not signature:
            raise Unauthorized("missing X-Mailpipe-Timestamp or X-Mailpipe-Signature")
        if not hmac.compare_digest(signature.encode(), sign(self._key, timestamp, body).encode()):
            raise Unauthorized("invalid signature")
        require_fresh(epoch_seconds(timestamp), now)
        items = json_body(body, "local webhook")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise InvalidInput("body must be a JSON array of event objects")
        return [FeedbackEvent.from_dict({**item, "provider": self.name}) for item in items]
