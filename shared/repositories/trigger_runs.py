"""Trigger runs: one document per (trigger, subscriber, starting event), the durable state of a
delayed step. The state lives in the document store, so a restart loses nothing.

    waiting --claim--> sending --finish--> sent | capped | skipped | failed
       ^                  |
       +----defer---------+   (quiet hours: back to waiting with a later due_at)
    waiting --cancel--> cancelled   (an `unless` event while waiting)

The run id is derived from (trigger, subscriber, idempotency key) and created with
create-if-absent, so the same event twice is one run. A claim is a transactional state change
with an owner and a lease: a second sweep sees the run taken; a sweep that died mid-send leaves
a lapsed lease that the next sweep takes over (the send ledger, keyed by the run id, keeps the
mail single).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.domain.errors import AlreadyExists
from shared.domain.events import stable_id
from shared.ports import DocumentStore, Filter, paged

COLLECTION = "trigger_runs"
WAITING, SENDING = "waiting", "sending"
SENT, CANCELLED, CAPPED, SKIPPED, FAILED = "sent", "cancelled", "capped", "skipped", "failed"
FINAL_STATES = frozenset({SENT, CANCELLED, CAPPED, SKIPPED, FAILED})
STATES = (WAITING, SENDING, *sorted(FINAL_STATES))


@dataclass
class TriggerRun:
    id: str
    trigger_id: str
    subscriber_id: str
    event_name: str
    event_at: float
    idempotency_key: str
    created_at: float
    due_at: float
    properties: dict[str, Any] = field(default_factory=dict)
    state: str = WAITING
    reason: str | None = None
    attempts: int = 0
    claim_owner: str = ""
    claim_until: float = 0.0
    finished_at: float | None = None

    @staticmethod
    def id_for(trigger_id: str, subscriber_id: str, idempotency_key: str) -> str:
        return "r" + stable_id("trigger-run", trigger_id, subscriber_id, idempotency_key)[:31]

    @classmethod
    def from_doc(cls, doc_id: str, doc: dict[str, Any]) -> TriggerRun:
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__ and k != "id"}
        return cls(id=doc_id, **known)

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["id"]
        return doc


class TriggerRuns:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def start(self, run: TriggerRun) -> bool:
        """Create the run; False when it exists already (the same event again)."""
        try:
            self._store.create(COLLECTION, run.id, run.to_doc())
        except AlreadyExists:
            return False
        return True

    def get(self, run_id: str) -> TriggerRun | None:
        doc = self._store.get(COLLECTION, run_id)
        return TriggerRun.from_doc(run_id, doc) if doc else None

    def waiting(self, subscriber_id: str, trigger_id: str) -> list[TriggerRun]:
        filters = [
            Filter("subscriber_id", "==", subscriber_id),
            Filter("trigger_id", "==", trigger_id),
            Filter("state", "==", WAITING),
        ]
        return [TriggerRun.from_doc(i, d) for i, d in self._store.query(COLLECTION, filters)]

    def ready(self, now: float, limit: int) -> list[str]:
        """Ids of runs to work on: waiting ones that are due, then sending ones whose sweep
        died (lease lapsed); at most `limit` of each."""
        due = [Filter("state", "==", WAITING), Filter("due_at", "<=", now)]
        stalled = [Filter("state", "==", SENDING), Filter("claim_until", "<=", now)]
        ids = [i for i, _ in self._store.query(COLLECTION, due, limit=limit)]
        return ids + [i for i, _ in self._store.query(COLLECTION, stalled, limit=limit)]

    def cancel(self, run_id: str, unless_at: float, reason: str, now: float) -> TriggerRun | None:
        """Cancel a waiting run started at or before `unless_at`; the run, or None when it was
        not waiting (sent, taken by a sweep, or started after the cancelling event)."""

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc["state"] != WAITING or doc["event_at"] > unless_at:
                return None
            return {**doc, "state": CANCELLED, "reason": reason, "finished_at": now}

        return self._changed(run_id, change)

    def claim(self, run_id: str, now: float, lease_s: float) -> TriggerRun | None:
        """Take a due waiting run, or a sending run whose lease lapsed; None when it is not
        there to take (another sweep has it, it is final, or not yet due)."""
        owner = uuid.uuid4().hex

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            due = doc["state"] == WAITING and doc["due_at"] <= now
            lapsed = doc["state"] == SENDING and doc["claim_until"] <= now
            if not (due or lapsed):
                return None
            claim = {"claim_owner": owner, "claim_until": now + lease_s}
            return {**doc, **claim, "state": SENDING, "attempts": doc.get("attempts", 0) + 1}

        return self._changed(run_id, change)

    def defer(self, run: TriggerRun, until: float, reason: str) -> None:
        """Back to waiting until `until` (quiet hours), if this claim still holds the run."""
        self._release(run, {"state": WAITING, "due_at": until, "reason": reason})

    def finish(self, run: TriggerRun, state: str, reason: str | None, now: float) -> None:
        """Record the final state, if this claim still holds the run."""
        self._release(run, {"state": state, "reason": reason, "finished_at": now})

    def _release(self, run: TriggerRun, changes: dict[str, Any]) -> None:
        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if not doc or doc["state"] != SENDING or doc.get("claim_owner") != run.claim_owner:
                return None
            return {**doc, **changes, "claim_owner": "", "claim_until": 0.0}

        self._store.update(COLLECTION, run.id, apply)

    def _changed(
        self, run_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> TriggerRun | None:
        """Apply `change` (document -> new document, or None for no change) in a transaction;
        the run as stored when it changed, else None."""
        changed = [False]

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            new = change(doc) if doc else None
            changed[0] = new is not None  # the last (committed) attempt decides
            return new

        doc = self._store.update(COLLECTION, run_id, apply)
        return TriggerRun.from_doc(run_id, doc) if doc and changed[0] else None

    def counts(self) -> dict[tuple[str, str], int]:
        """(trigger id, state) -> runs, over every run (for operators; pages the collection)."""
        counts: dict[tuple[str, str], int] = {}
        for page in paged(self._store, COLLECTION):
            for _, doc in page:
                key = (doc["trigger_id"], doc["state"])
                counts[key] = counts.get(key, 0) + 1
        return counts

    def of_subscriber(self, subscriber_id: str) -> list[TriggerRun]:
        """Every run of one subscriber (GDPR export)."""
        by_owner = [Filter("subscriber_id", "==", subscriber_id)]
        pages = paged(self._store, COLLECTION, by_owner)
        return [TriggerRun.from_doc(i, d) for page in pages for i, d in page]

    def erase_subscriber(self, subscriber_id: str) -> int:
        """Delete every run of one subscriber (GDPR erasure); returns how many."""
        runs = self.of_subscriber(subscriber_id)
        for run in runs:
            self._store.delete(COLLECTION, run.id)
        return len(runs)
