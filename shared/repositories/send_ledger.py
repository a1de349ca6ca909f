"""The send ledger: one document per batch, recording each recipient's outcome.

One document per batch (not per recipient) is what keeps exactly-once cheap: a million emails
cost ~2,000 ledger documents, not a million. A lease stops two deliveries of the same batch from
sending at once; the lease is renewed at every checkpoint.

Outcomes: sent | permanent (rejected) | suppressed | skipped (campaign cancelled) |
failed (transient until the attempts ran out) | transient:<n> (will be retried) |
holdout (an A/B holdout member: deliberately not mailed, recorded so lift can be measured).
A failed or permanent outcome keeps its reason (`reasons`: what the provider answered, or why
the recipient could not be rendered), for `campaign show`, the dashboard and resend-failed.

A batch of a paused campaign is parked: its document keeps the recipients not yet final (ids,
variant, phase) because the message itself is acknowledged; resume republishes them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.domain.errors import AlreadyExists, AlreadyProcessed, TransientError
from shared.ports import DocumentStore, Filter

COLLECTION = "send_ledger"
OPEN, DONE, PARKED = "open", "done", "parked"
HOLDOUT = "holdout"
FINAL_OUTCOMES = frozenset({"sent", "permanent", "suppressed", "skipped", "failed", HOLDOUT})


class LeaseLost(TransientError):
    """Another delivery took the batch over after this one's lease lapsed: stop sending."""


@dataclass
class LedgerEntry:
    batch_id: str
    campaign_id: str | None
    state: str = OPEN
    attempts: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    owner: str = ""  # the delivery holding the lease; empty for read-only copies
    # Claimed from an earlier delivery that never made its last write (done, release or
    # park): it crashed or its lease lapsed, so what it recorded may be unreported.
    taken_over: bool = False

    def check_owner(self, doc: dict[str, Any] | None) -> None:
        """LeaseLost when the stored lease now belongs to another delivery."""
        if self.owner and doc is not None and doc.get("lease_owner") != self.owner:
            raise LeaseLost(f"batch {self.batch_id} was taken over by another delivery")

    def is_final(self, subscriber_id: str) -> bool:
        return self.outcomes.get(subscriber_id, "") in FINAL_OUTCOMES

    def transient_count(self, subscriber_id: str) -> int:
        outcome = self.outcomes.get(subscriber_id, "")
        return int(outcome.split(":")[1]) if outcome.startswith("transient:") else 0


class SendLedger:
    def __init__(self, store: DocumentStore, lease_s: float = 120.0) -> None:
        self._store = store
        self._lease_s = lease_s

    def claim(self, batch_id: str, campaign_id: str | None, owner: str, now: float) -> LedgerEntry:
        """Take the batch's lease. AlreadyProcessed when it is done; TransientError while
        another delivery holds a live lease (it will finish, or its lease will lapse).

        The first delivery creates the document (one write, no read); only a redelivery, which
        finds it there, pays for a transaction's read."""
        first = self._claim_new(batch_id, campaign_id, owner, now)
        if first is not None:
            return first
        taken_over = False

        def apply(doc: dict[str, Any] | None) -> dict[str, Any]:
            nonlocal taken_over
            doc = doc or {"campaign_id": campaign_id, "state": OPEN, "attempts": 0, "outcomes": {}}
            if doc["state"] == DONE:
                raise AlreadyProcessed(f"batch {batch_id} already sent")
            if doc.get("lease_until", 0) > now and doc.get("lease_owner") != owner:
                raise TransientError(f"batch {batch_id} is being sent by another delivery")
            taken_over = doc.get("lease_until", 0) != 0 and bool(doc["outcomes"])
            return {
                **doc,
                "state": OPEN,
                "attempts": doc["attempts"] + 1,
                "lease_owner": owner,
                "lease_until": now + self._lease_s,
                "updated_at": now,
            }

        doc = self._store.update(COLLECTION, batch_id, apply) or {}
        return LedgerEntry(
            batch_id, campaign_id, doc["state"], doc["attempts"], doc["outcomes"],
            doc.get("reasons", {}), owner, taken_over,
        )  # fmt: skip

    def _claim_new(
        self, batch_id: str, campaign_id: str | None, owner: str, now: float
    ) -> LedgerEntry | None:
        """The entry of a batch no delivery has claimed yet; None when its document exists."""
        doc: dict[str, Any] = {
            "campaign_id": campaign_id,
            "state": OPEN,
            "attempts": 1,
            "outcomes": {},
            "lease_owner": owner,
            "lease_until": now + self._lease_s,
            "updated_at": now,
        }
        try:
            self._store.create(COLLECTION, batch_id, doc)
        except AlreadyExists:
            return None
        return LedgerEntry(batch_id, campaign_id, OPEN, 1, {}, {}, owner)

    def checkpoint(
        self,
        entry: LedgerEntry,
        outcomes: Mapping[str, str],
        now: float,
        state: str = OPEN,
        reasons: Mapping[str, str] | None = None,
    ) -> None:
        """Record outcomes, with the reasons of failures (and renew the lease, or release it
        when the state is final). LeaseLost when another delivery took the batch over: the
        caller must stop sending."""
        entry.outcomes.update(outcomes)
        entry.reasons.update(reasons or {})
        entry.state = state

        def apply(doc: dict[str, Any] | None) -> dict[str, Any]:
            entry.check_owner(doc)
            doc = dict(doc or {"campaign_id": entry.campaign_id, "attempts": entry.attempts})
            doc["outcomes"] = {**doc.get("outcomes", {}), **outcomes}
            if reasons:
                doc["reasons"] = {**doc.get("reasons", {}), **reasons}
            doc["state"] = state
            doc["updated_at"] = now
            doc["lease_until"] = now + self._lease_s if state == OPEN else 0
            return doc

        self._store.update(COLLECTION, entry.batch_id, apply)

    def park(
        self,
        entry: LedgerEntry,
        subscriber_ids: list[str],
        variant: str | None,
        phase: str | None,
        now: float,
    ) -> None:
        """Park the batch (campaign paused), keeping what resume needs to rebuild it."""
        entry.state = PARKED
        parked = {"subscriber_ids": subscriber_ids, "variant": variant, "phase": phase,
                  "parked_at": now}  # fmt: skip

        def apply(doc: dict[str, Any] | None) -> dict[str, Any]:
            entry.check_owner(doc)
            doc = dict(doc or {"campaign_id": entry.campaign_id, "attempts": entry.attempts})
            doc.setdefault("outcomes", {})
            return {**doc, "state": PARKED, "parked": parked, "updated_at": now, "lease_until": 0}

        self._store.update(COLLECTION, entry.batch_id, apply)

    def parked(self, campaign_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(batch id, parked data) of the campaign's parked batches."""
        found: list[tuple[str, dict[str, Any]]] = []
        start: str | None = None
        filters = [Filter("campaign_id", "==", campaign_id), Filter("state", "==", PARKED)]
        while True:
            page = self._store.query(COLLECTION, filters, limit=500, start_after=start)
            found += [(i, d.get("parked") or {}) for i, d in page]
            if len(page) < 500:
                return found
            start = page[-1][0]

    def record_holdout(
        self, batch_id: str, campaign_id: str, subscriber_ids: list[str], now: float
    ) -> None:
        """One done document per page of holdout members (a replay rewrites the same one)."""
        doc = {
            "campaign_id": campaign_id,
            "state": DONE,
            "attempts": 0,
            "outcomes": dict.fromkeys(subscriber_ids, HOLDOUT),
            "updated_at": now,
            "lease_until": 0,
        }
        self._store.put(COLLECTION, batch_id, doc)

    def release(self, entry: LedgerEntry, now: float) -> None:
        """Give the lease up after a failed delivery, so the redelivery need not wait it out.
        Outcomes already checkpointed stay."""

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is None or (entry.owner and doc.get("lease_owner") != entry.owner):
                return None  # not ours (any more): leave the new owner's lease alone
            return {**doc, "lease_until": 0, "updated_at": now}

        self._store.update(COLLECTION, entry.batch_id, apply)

    def get(self, batch_id: str) -> LedgerEntry | None:
        doc = self._store.get(COLLECTION, batch_id)
        if doc is None:
            return None
        return LedgerEntry(batch_id, doc.get("campaign_id"), doc["state"], doc["attempts"],
                           doc.get("outcomes", {}), doc.get("reasons", {}))  # fmt: skip

    def of_campaign(self, campaign_id: str) -> list[LedgerEntry]:
        return list(self.iter_campaign(campaign_id))

    def iter_campaign(self, campaign_id: str, page_size: int = 500) -> Iterator[LedgerEntry]:
        """The campaign's entries a page at a time, for readers that need not hold them all
        (an entry holds up to a batch's 250 outcomes)."""
        start: str | None = None
        where = [Filter("campaign_id", "==", campaign_id)]
        while True:
            page = self._store.query(COLLECTION, where, limit=page_size, start_after=start)
            for i, d in page:
                yield LedgerEntry(i, campaign_id, d["state"], d["attempts"],
                                  d.get("outcomes", {}), d.get("reasons", {}))  # fmt: skip
            if len(page) < page_size:
                return
            start = page[-1][0]
