"""Campaign documents (one per campaign), and a short-lived per-process cache of their status.

Every change goes through `change`, an atomic read-modify-write of the one document, so the
state machine in shared/domain/campaign.py is enforced even when the CLI, the admin API, the
sweep and a dispatcher act on the same campaign at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from shared.domain.campaign import ACTIVE, Campaign
from shared.domain.errors import AlreadyExists, Conflict, NotFound
from shared.ports import DocumentStore, Filter

COLLECTION = "campaigns"
T = TypeVar("T")


class Campaigns:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def get(self, campaign_id: str) -> Campaign:
        doc = self._store.get(COLLECTION, campaign_id)
        if doc is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        return Campaign.from_doc(doc)

    def create(self, campaign: Campaign) -> None:
        """Conflict when the id is taken."""
        try:
            self._store.create(COLLECTION, campaign.id, campaign.to_doc())
        except AlreadyExists as exc:
            raise Conflict(f"a campaign with id {campaign.id!r} already exists") from exc

    def change(self, campaign_id: str, mutate: Callable[[Campaign], T]) -> tuple[Campaign, T]:
        """Atomically apply `mutate` (which may raise to change nothing) and store the result.
        Returns the stored campaign and what `mutate` returned. NotFound when absent."""
        results: list[T] = []

        def apply(doc: dict | None) -> dict:
            if doc is None:
                raise NotFound(f"no campaign {campaign_id!r}")
            campaign = Campaign.from_doc(doc)
            results[:] = [mutate(campaign)]  # `apply` may run again under contention
            return campaign.to_doc()

        stored = self._store.update(COLLECTION, campaign_id, apply)
        return Campaign.from_doc(stored or {}), results[0]

    def delete(self, campaign_id: str) -> None:
        self._store.delete(COLLECTION, campaign_id)

    def query(
        self, statuses: Sequence[str] = (), limit: int = 100, start_after: str | None = None
    ) -> list[Campaign]:
        filters = [Filter("status", "in", list(statuses))] if statuses else []
        page = self._store.query(COLLECTION, filters, limit=limit, start_after=start_after)
        return [Campaign.from_doc(doc) for _, doc in page]

    def active(self) -> list[Campaign]:
        """Scheduled, sending and testing campaigns: what the sweep looks after."""
        found: list[Campaign] = []
        start: str | None = None
        while True:
            page = self.query(ACTIVE, limit=200, start_after=start)
            found += page
            if len(page) < 200:
                return found
            start = page[-1].id

    def recently_resumed(self, since: float) -> list[Campaign]:
        """Campaigns resumed at or after `since` (parked batches may still wait for them)."""
        page = self._store.query(COLLECTION, [Filter("resumed_at", ">=", since)], limit=500)
        return [Campaign.from_doc(doc) for _, doc in page]

    def status(self, campaign_id: str) -> str | None:
        doc = self._store.get(COLLECTION, campaign_id)
        return doc.get("status") if doc else None


class CachedStatuses:
    """Campaign statuses cached for `ttl_s` per process, so the send stage does not read the
    campaign document for every batch. `fresh` bypasses the cache (and refreshes it)."""

    def __init__(self, campaigns: Campaigns, ttl_s: float, clock: Callable[[], float]) -> None:
        self._campaigns = campaigns
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def status(self, campaign_id: str, fresh: bool = False) -> str | None:
        now = self._clock()
        cached = self._cache.get(campaign_id)
        if cached and not fresh and now - cached[1] < self._ttl:
            return cached[0]
        status = self._campaigns.status(campaign_id)
        with self._lock:
            self._cache[campaign_id] = (status, now)
        return status
