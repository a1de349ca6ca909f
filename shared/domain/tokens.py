"""Signed, URL-safe tokens: `<base64url payload>.<base64url keyed BLAKE2b, 128 bits>`.

Used for links in mail (unsubscribe, preferences, click and open tracking) so that a link
proves what it points at without a database read, and cannot be forged or altered.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
from typing import Any

from shared.domain.errors import InvalidToken

_MAC_BYTES = 16


def b64(data: bytes) -> str:
    """URL-safe base64 without padding (concatenable when len(data) % 3 == 0)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mac_input(purpose: str, payload: bytes) -> bytes:
    """What the MAC covers: the purpose, a separator, then the payload."""
    return purpose.encode() + b"\0" + payload


def mac_key(secret: str) -> bytes:
    """The 32-byte MAC key derived from the configured secret (any length)."""
    return hashlib.sha256(b"mailpipe-token-mac\0" + secret.encode()).digest()


def mac_bytes(key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2b, a MAC by design and ~2x faster than HMAC-SHA256 here: a campaign signs
    a dozen or more links per message."""
    return hashlib.blake2b(data, key=key, digest_size=_MAC_BYTES).digest()


def _mac(secret: str, purpose: str, payload: bytes) -> bytes:
    return mac_bytes(_derived_key(secret), mac_input(purpose, payload))


@functools.lru_cache(maxsize=16)
def _derived_key(secret: str) -> bytes:
    return mac_key(secret)


def sign(key: str, purpose: str, payload: Any) -> str:
    """A token for `payload` (JSON-able) that is only valid for `purpose`."""
    return sign_json(key, purpose, json.dumps(payload, separators=(",", ":")).encode())


def sign_json(key: str, purpose: str, body: bytes) -> str:
    """Like `sign` for a payload the caller already serialized as JSON (hot paths)."""
    return f"{b64(body)}.{b64(_mac(key, purpose, body))}"


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
