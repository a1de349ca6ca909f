"""Email address validation and normalization (email-validator does the RFC work, IDN included)."""

from __future__ import annotations

import hashlib
import hmac

from email_validator import EmailNotValidError, validate_email

from shared.domain.errors import InvalidAddress

MAX_ADDRESS_LENGTH = 254


def normalize_address(raw: object) -> str:
    """The canonical form of an address: IDN domain as Unicode, lowercased domain, and the local
    part kept as typed (it may be case-sensitive). Raises InvalidAddress saying what is wrong."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidAddress("email is required", field="email")
    text = raw.strip()
    if len(text) > MAX_ADDRESS_LENGTH or any(c in text for c in "\r\n\0"):
        raise InvalidAddress("email is not a valid address", field="email")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"email is not valid: {exc}", field="email") from exc
    return result.normalized


def address_key(address: str) -> str:
    """The comparison key for an already normalized address (case-insensitive local part)."""
    return address.lower()


def keyed_hash(secret: str, address: str) -> str:
    """A keyed hash of an address: stable ids and erasure-proof suppression without the address."""
    return hmac.new(secret.encode(), address_key(address).encode(), hashlib.sha256).hexdigest()
