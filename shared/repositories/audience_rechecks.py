"""The last answer of a campaign's send-time re-check (shared/services/audience_recheck.py),
shared by every send instance: one document per campaign holding when the warehouse was asked
and who had left the audience then.

An instance whose own copy is older than the re-check's TTL reads this document (one
Firestore read, $0.0000006) before asking the warehouse (at least 10 MB billed, ~$0.00006): a
campaign then costs one warehouse query per TTL, not one per send instance per TTL. The
document is rewritten by whichever instance queried last; an answer too large for a document
is not shared (each instance then queries, as before). An erasure takes the person out of
every shared answer (`erase_subscriber`); the suppression it adds keeps them unmailed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.ports import DocumentStore, Filter, paged

COLLECTION = "audience_rechecks"
MAX_SHARED_IDS = 10_000  # ~40 bytes an id: well inside Firestore's 1 MiB per document


@dataclass(frozen=True)
class RecheckAnswer:
    checked_at: float
    gone: frozenset[str]


class AudienceRechecks:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def get(self, campaign_id: str) -> RecheckAnswer | None:
        doc = self._store.get(COLLECTION, campaign_id)
        if doc is None:
            return None
        return RecheckAnswer(float(doc["checked_at"]), frozenset(doc.get("gone") or ()))

    def put(self, campaign_id: str, answer: RecheckAnswer) -> bool:
        """Share the answer; False (and nothing written) when it is too large to share."""
        if len(answer.gone) > MAX_SHARED_IDS:
            return False
        doc = {"campaign_id": campaign_id, "checked_at": answer.checked_at,
               "gone": sorted(answer.gone)}  # fmt: skip
        self._store.put(COLLECTION, campaign_id, doc)
        return True

    def naming(self, subscriber_id: str) -> list[str]:
        """The campaigns whose shared answer names the person (a GDPR export lists them)."""
        holding = [Filter("gone", "array_contains", subscriber_id)]
        return [doc_id for page in paged(self._store, COLLECTION, holding) for doc_id, _ in page]

    def erase_subscriber(self, subscriber_id: str) -> int:
        """Take the person out of every shared answer; returns how many documents changed."""
        found = self.naming(subscriber_id)

        def without(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is None or subscriber_id not in (doc.get("gone") or ()):
                return None
            return {**doc, "gone": [i for i in doc["gone"] if i != subscriber_id]}

        for doc_id in found:
            self._store.update(COLLECTION, doc_id, without)
        return len(found)
