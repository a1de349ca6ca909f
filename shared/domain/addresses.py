"""Email address validation and normalization (email-validator does the RFC work, IDN included)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

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
    local, _, domain = text.rpartition("@")
    if _PLAIN_LOCAL.match(local) and len(local) <= MAX_LOCAL_LENGTH:
        # The common case, ~30x faster (imports of millions): a plain ASCII local part stays
        # as typed, so only the domain needs email-validator, once per domain.
        ok, checked = _checked_domain(domain)
        if not ok:
            raise InvalidAddress(checked, field="email")
        return f"{local}@{checked}"
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"email is not valid: {exc}", field="email") from exc
    return result.normalized


MAX_LOCAL_LENGTH = 64
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_LOCAL = re.compile(rf"^{_ATOM}(\.{_ATOM})*$")


@functools.lru_cache(maxsize=8192)
def _checked_domain(domain: str) -> tuple[bool, str]:
    """(True, the normalized domain) or (False, why not), as email-validator says."""
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        return False, f"email is not valid: {exc}"
    return True, result.domain


def address_key(address: str) -> str:
    """The comparison key for an already normalized address (case-insensitive local part)."""
    return address.lower()


def keyed_hash(secret: str, address: str) -> str:
    """A keyed hash of an address: stable ids and erasure-proof suppression without the address."""
    return hmac.digest(secret.encode(), address_key(address).encode(), hashlib.sha256).hex()
