"""Single-use, expiring secrets (confirmation links). Only their SHA-256 is stored."""

from __future__ import annotations

import contextlib
from typing import Any

from shared.domain.errors import AlreadyExists, InvalidToken
from shared.domain.tokens import token_digest
from shared.ports import DocumentStore

COLLECTION = "tokens"


class SingleUseTokens:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def issue(self, token: str, purpose: str, subscriber_id: str, expires_at: float) -> None:
        """Store a token; issuing the same token again (a retried event) is a no-op."""
        doc = {
            "purpose": purpose,
            "subscriber_id": subscriber_id,
            "expires_at": expires_at,
            "used_at": None,
        }
        with contextlib.suppress(AlreadyExists):
            self._store.create(COLLECTION, token_digest(token), doc)

    def check(self, token: str, purpose: str, now: float) -> dict[str, Any]:
        """The token's record if it is usable; InvalidToken if unknown, expired or used."""
        if not isinstance(token, str) or not token or len(token) > 200:
            raise InvalidToken("this link is not valid")
        return _usable(self._store.get(COLLECTION, token_digest(token)), purpose, now)

    def consume(self, token: str, purpose: str, now: float) -> dict[str, Any]:
        """Mark the token used (atomically) and return its record; InvalidToken as in check."""

        def apply(doc: dict | None) -> dict | None:
            return {**_usable(doc, purpose, now), "used_at": now}

        return self._store.update(COLLECTION, token_digest(token), apply) or {}


def _usable(doc: dict[str, Any] | None, purpose: str, now: float) -> dict[str, Any]:
    if doc is None or doc.get("purpose") != purpose:
        raise InvalidToken("this link is not valid")
    if doc.get("used_at") is not None:
        raise InvalidToken("this link was already used")
    if doc["expires_at"] < now:
        raise InvalidToken("this link has expired; please sign up again")
    return doc


WEBHOOK_TOKENS = "webhook_tokens"


class SeenWebhookTokens:
    """Nonces a provider signed into webhook requests (Mailgun's `token`), remembered until
    `expires_at` so a captured request cannot be replayed while its timestamp is still fresh.
    Only the SHA-256 of each token is stored (one create per webhook request); a TTL policy on
    `expires_at` deletes them later, and the freshness check refuses anything older anyway."""

    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def first_use(self, provider: str, token: str, expires_at: float) -> bool:
        """Record the token; False when it was seen before (a replay)."""
        doc_id = f"{provider}:{token_digest(token)}"
        try:
            self._store.create(
                WEBHOOK_TOKENS, doc_id, {"provider": provider, "expires_at": expires_at}
            )
        except AlreadyExists:
            return False
        return True
