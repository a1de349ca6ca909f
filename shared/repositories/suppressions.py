"""The suppression list: keyed hashes of addresses that must never be mailed.

Keyed by hash, not address, so an entry survives GDPR erasure without keeping the address.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.domain.addresses import keyed_hash
from shared.ports import DocumentStore, Filter

COLLECTION = "suppressions"
# Reasons; an unsubscribe is lifted by a new double opt-in, the others are not.
UNSUBSCRIBED = "unsubscribed"
HARD_BOUNCE = "hard_bounce"
SOFT_BOUNCES = "soft_bounces"
COMPLAINT = "complaint"
ERASED = "erased"
MANUAL = "manual"
LIFTED_BY_OPT_IN = frozenset({UNSUBSCRIBED})


class Suppressions:
    def __init__(self, store: DocumentStore, hash_key: str) -> None:
        self._store = store
        self._hash_key = hash_key

    def key(self, email: str) -> str:
        return keyed_hash(self._hash_key, email)

    def add(self, email: str, reason: str, at: float, source: str = "") -> None:
        """Suppress; a stronger existing reason (complaint, bounce) is kept."""
        key = self.key(email)

        def apply(doc: dict | None) -> dict | None:
            if doc and doc.get("reason") not in LIFTED_BY_OPT_IN:
                return None
            return {"reason": reason, "created_at": at, "source": source}

        self._store.update(COLLECTION, key, apply)

    def lift_for_opt_in(self, email: str) -> bool:
        """A fresh double opt-in lifts an unsubscribe, never a bounce or complaint."""
        doc = self._store.get(COLLECTION, self.key(email))
        if doc and doc.get("reason") in LIFTED_BY_OPT_IN:
            self._store.delete(COLLECTION, self.key(email))
            return True
        return doc is None

    def reason(self, email: str) -> str | None:
        doc = self._store.get(COLLECTION, self.key(email))
        return doc.get("reason") if doc else None

    def added_since(self, since: float) -> set[str]:
        """Keys suppressed at or after `since`: the send-time re-check reads only these."""
        keys: set[str] = set()
        start: str | None = None
        while True:
            page = self._store.query(
                COLLECTION, [Filter("created_at", ">=", since)], limit=1000, start_after=start
            )
            keys.update(k for k, _ in page)
            if len(page) < 1000:
                return keys
            start = page[-1][0]

    def suppressed_among(self, emails: Iterable[str], since: float) -> set[str]:
        """Which of `emails` were suppressed at or after `since`."""
        recent = self.added_since(since)
        return {e for e in emails if self.key(e) in recent} if recent else set()

    def reasons_of(
        self, emails: Iterable[str], keys: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The suppression reason of each of `emails` that is suppressed (one read each);
        `keys` may hold their keys already (address -> key)."""
        known = keys or {}
        by_key = {known.get(e) or self.key(e): e for e in emails}
        found = self._store.get_many(COLLECTION, list(by_key)) if by_key else {}
        return {by_key[k]: str(doc.get("reason") or "suppressed") for k, doc in found.items()}

    def suppressed_now(self, emails: Iterable[str]) -> set[str]:
        """Which of `emails` are suppressed, by direct lookup (one read each)."""
        by_key = {self.key(e): e for e in emails}
        return {by_key[k] for k in self._store.get_many(COLLECTION, list(by_key))}
