"""What every provider's webhook check shares: header lookup, the freshness window, JSON bodies.

The order of a webhook parser is fixed: signature over the raw body (Unauthorized), then
freshness (Unauthorized), then the content (InvalidInput). Nothing is trusted before the
signature holds, so a body that cannot even be searched for its signature is Unauthorized too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.domain import strict_json
from shared.domain.errors import InvalidInput, Unauthorized

MAX_AGE_S = 300  # the 5 minutes; also bounds how long replay tokens must be kept


def header(headers: Mapping[str, str], name: str) -> str:
    """A header's value, case-insensitively; "" when absent."""
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


def require_fresh(signed_at: float, now: float, max_age_s: float = MAX_AGE_S) -> None:
    """Unauthorized when the signed timestamp is more than `max_age_s` from now, either way
    (a future timestamp is as suspicious as an old one; clocks agree within seconds)."""
    if abs(now - signed_at) > max_age_s:
        raise Unauthorized("stale signature: the timestamp is more than 5 minutes old")


def epoch_seconds(raw: object) -> float:
    """A unix timestamp given as number or text; Unauthorized when it is neither (it is part of
    what was signed, so a bad one means the signature cannot be trusted)."""
    if isinstance(raw, bool) or raw in (None, ""):
        raise Unauthorized("missing signature timestamp")
    try:
        signed_at = float(str(raw))
    except (ValueError, OverflowError) as exc:
        raise Unauthorized("invalid signature timestamp") from exc
    if not math.isfinite(signed_at):  # NaN is never "more than 5 minutes" from anything
        raise Unauthorized("invalid signature timestamp")
    return signed_at


def iso_seconds(raw: object, what: str) -> float:
    """An ISO 8601 instant ("2026-01-27T14:59:38.237Z") as unix seconds; InvalidInput if not."""
    try:
        return datetime.fromisoformat(str(raw)).timestamp()
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"{what} is not an ISO 8601 timestamp: {raw!r}") from exc


def json_body(body: bytes, what: str) -> Any:
    """The parsed JSON body; InvalidInput saying what is wrong otherwise."""
    return strict_json.loads(body, f"{what}: body")


def text_field(item: Mapping[str, Any], name: str, what: str) -> str:
    """A required non-empty text field of a provider event; InvalidInput when missing."""
    value = item.get(name)
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        raise InvalidInput(f"{what}: field {name!r} is missing or not text", field=name)
    return str(value)


def strip_angles(message_id: object) -> str | None:
    """A Message-ID without its angle brackets (how OutgoingEmail.message_id stores it)."""
    if not isinstance(message_id, str) or not message_id.strip():
        return None
    return message_id.strip().removeprefix("<").removesuffix(">") or None
