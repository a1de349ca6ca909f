"""Signed, URL-safe tokens: `<base64url payload>.<base64url HMAC-SHA256 truncated to 128 bits>`.

Used for links in mail (unsubscribe, preferences, click and open tracking) so that a link
proves what it points at without a database read, and cannot be forged or altered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from shared.domain.errors import InvalidToken

_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, purpose: str, payload: bytes) -> bytes:
    return hmac.new(key.encode(), purpose.encode() + b"\0" + payload, hashlib.sha256).digest()[
        :_MAC_BYTES
    ]


def sign(key: str, purpose: str, payload: Any) -> str:
    """A token for `payload` (JSON-able) that is only valid for `purpose`."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return f"{_b64(body)}.{_b64(_mac(key, purpose, body))}"


def verify(key: str, purpose: str, token: str) -> Any:
    """The payload of a genuine token for `purpose`; InvalidToken for anything else."""
    try:
        body_text, mac_text = token.split(".", 1)
        body = _unb64(body_text)
        mac = _unb64(mac_text)
    except (ValueError, TypeError) as exc:
        raise InvalidToken("this link is not valid") from exc
    if not hmac.compare_digest(mac, _mac(key, purpose, body)):
        raise InvalidToken("this link is not valid")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InvalidToken("this link is not valid") from exc


def random_token() -> str:
    """A single-use secret with 192 random bits (confirmation links)."""
    return secrets.token_urlsafe(24)


def token_digest(token: str) -> str:
    """What we store of a single-use secret: its SHA-256, so a leaked store leaks no links."""
    return hashlib.sha256(token.encode()).hexdigest()
