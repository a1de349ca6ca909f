"""Fixed-window counters for abuse limits (signups per IP and per address, per hour)."""

from __future__ import annotations

from shared.domain.errors import RateLimited
from shared.ports import DocumentStore

COLLECTION = "rate_limits"


class RateLimits:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def hit(self, key: str, limit: int, window_s: int, now: float) -> None:
        """Count one hit on `key`; RateLimited once more than `limit` fall in this window."""
        window = int(now // window_s)
        doc_id = f"{key}:{window}"

        def apply(doc: dict | None) -> dict:
            count = (doc or {}).get("count", 0) + 1
            return {"count": count, "expires_at": (window + 1) * window_s}

        stored = self._store.update(COLLECTION, doc_id, apply) or {}
        if stored.get("count", 0) > limit:
            raise RateLimited("too many requests; please try again later")
