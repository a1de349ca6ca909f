"""MaildirMail: the mail the local SMTP sink stored (<data_dir>/mail), searched by recipient.

Only local mode stores sent mail; on GCP the providers keep their own logs (see the README on
retention). A message is "to" an address when its To, Cc or Delivered-To header names it; the
comparison uses the address's canonical key, so case and IDN spelling do not matter. Headers
are read as UTF-8 (RFC 6532), as the sink stores mail sent with SMTPUTF8.
"""

from __future__ import annotations

import email.policy
import mailbox
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from shared.domain.addresses import address_key, normalize_address
from shared.domain.errors import InvalidInput

_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To")
_HEADERS = BytesHeaderParser(policy=email.policy.SMTPUTF8)  # only headers are read here


class MaildirMail:
    def __init__(self, maildir: Path) -> None:
        self._path = Path(maildir)

    def messages_to(self, address: str) -> list[dict[str, Any]]:
        """Every stored message to `address`: its key, main headers and full text."""
        if not self._path.exists():
            return []
        box = mailbox.Maildir(str(self._path), create=False)
        return [_describe(*found) for found in self._matching(box, address)]

    def delete_to(self, address: str) -> int:
        """Delete every stored message to `address`; returns how many."""
        if not self._path.exists():
            return 0
        box = mailbox.Maildir(str(self._path), create=False)
        keys = [key for key, _, _ in self._matching(box, address)]
        for key in keys:
            box.discard(key)
        return len(keys)

    def _matching(self, box: mailbox.Maildir, address: str) -> list[tuple[str, bytes, Any]]:
        wanted = _key(address)
        found = []
        for key in box.iterkeys():
            try:
                raw = box.get_bytes(key)
            except KeyError:  # deleted meanwhile
                continue
            message = _HEADERS.parsebytes(raw)
            if wanted in _recipients(message):
                found.append((key, raw, message))
        return found


def _key(address: str) -> str | None:
    try:
        return address_key(normalize_address(address))
    except InvalidInput:
        return None


def _recipients(message: Any) -> set[str]:
    values = [str(v) for name in _RECIPIENT_HEADERS for v in message.get_all(name, [])]
    keys = {_key(addr) for _, addr in getaddresses(values) if addr}
    return {k for k in keys if k}


def _describe(key: str, raw: bytes, message: Any) -> dict[str, Any]:
    return {
        "key": key,
        "message_id": str(message.get("Message-ID", "")),
        "date": str(message.get("Date", "")),
        "subject": str(message.get("Subject", "")),  # RFC 2047 words decoded by the policy
        "to": str(message.get("To", "")),
        "raw": raw.decode("utf-8", "replace"),  # as stored
    }
