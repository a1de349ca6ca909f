"""The A/B remainder stash: who gets the winner, written while the test phase reads the audience
so that the remainder phase need not read every subscriber document a second time.

One document per test page, `campaign_remainders/<campaign id>:<page>`, holds the render data
(`Recipient`) of the page's remainder cohort: the subscribers who were eligible and matched the
segment when the test phase read the page, and whom the A/B hash put in the remainder. Holdout
and test-cohort members are not in it. A page with no such member still gets its (empty)
document, so a replayed test page always replaces what an earlier attempt wrote.

    campaign_id, page, part (1: the head), parts (head only), written_at,
    subscriber_ids (for GDPR look-ups), members (Recipient fields, in subscriber id order)

Reading the stash back costs one read per page instead of one per subscriber. A page whose
members exceed MAX_PART_BYTES or MAX_PART_MEMBERS (Firestore documents hold at most 1 MiB)
continues in overflow parts `<head id>.<part>`. The head is authoritative: it names how many
parts its page has, so overflow parts left behind by an earlier attempt that split differently
are never read; `purge` removes them with the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.messages import Recipient, to_json
from shared.ports import DocumentStore, Filter, paged

log = logging.getLogger(__name__)

COLLECTION = "campaign_remainders"
MAX_PART_BYTES = 400_000  # JSON bytes of members per document: well under Firestore's 1 MiB
MAX_PART_MEMBERS = 1_000  # two index entries each (members, subscriber_ids); the cap is 40,000


@dataclass(frozen=True)
class StashedPage:
    """One test page's remainder members, read back (all its parts joined)."""

    id: str  # the head document's id: the remainder phase's cursor
    page: int
    parts: int
    members: list[Recipient]


def head_id(campaign_id: str, page: int) -> str:
    return f"{campaign_id}:{page:06d}"


def part_id(campaign_id: str, page: int, part: int) -> str:
    return head_id(campaign_id, page) if part == 1 else f"{head_id(campaign_id, page)}.{part:03d}"


def split(members: Sequence[Recipient]) -> list[list[Recipient]]:
    """Members in parts of at most MAX_PART_MEMBERS and (but for a single huge member)
    MAX_PART_BYTES; always at least one part, so an empty page still has its head."""
    fits = len(members) <= MAX_PART_MEMBERS  # the usual page: measured once, as a whole
    if fits and len(to_json([m.to_doc() for m in members])) <= MAX_PART_BYTES:
        return [list(members)]
    parts: list[list[Recipient]] = [[]]
    size = 0
    for member in members:
        member_size = len(to_json(member.to_doc()))
        current = parts[-1]
        if current and (len(current) >= MAX_PART_MEMBERS or size + member_size > MAX_PART_BYTES):
            parts.append([])
            size = 0
        parts[-1].append(member)
        size += member_size
    return parts


class RemainderStash:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    # -- the test phase writes ---------------------------------------------------------

    def put_page(
        self, campaign_id: str, page: int, members: Sequence[Recipient], now: float
    ) -> int:
        """Create or replace the page's documents (a replay writes the same ones again);
        returns how many. Overflow parts first, the head last, so a head never names a part
        that is not there yet."""
        parts = split(members)
        for number in range(len(parts), 0, -1):
            doc: dict[str, Any] = {
                "campaign_id": campaign_id,
                "page": page,
                "part": number,
                "written_at": now,
                "subscriber_ids": [m.subscriber_id for m in parts[number - 1]],
                "members": [m.to_doc() for m in parts[number - 1]],
            }
            if number == 1:
                doc["parts"] = len(parts)
            self._store.put(COLLECTION, part_id(campaign_id, page, number), doc)
        return len(parts)

    # -- the remainder phase reads -----------------------------------------------------

    def pages(self, campaign_id: str) -> StashPages:
        """The campaign's stash as a page source for the dispatcher."""
        return StashPages(self._store, campaign_id)

    def discard(self, campaign_id: str, pages: Sequence[StashedPage]) -> None:
        """Delete dispatched pages: one delete per document."""
        for stashed in pages:
            for number in range(1, stashed.parts + 1):
                self._store.delete(COLLECTION, part_id(campaign_id, stashed.page, number))

    def purge(self, campaign_id: str) -> int:
        """Delete every document of the campaign (leftovers, or a cancelled campaign's)."""
        of_campaign = [Filter("campaign_id", "==", campaign_id)]
        ids = [doc_id for page in paged(self._store, COLLECTION, of_campaign) for doc_id, _ in page]
        for doc_id in ids:
            self._store.delete(COLLECTION, doc_id)
        return len(ids)

    # -- GDPR ----------------------------------------------------------------------------

    def of_subscriber(self, subscriber_id: str) -> list[dict[str, Any]]:
        """The person's entries: campaign, document and the render data kept for them."""
        return [
            {"campaign_id": doc.get("campaign_id"), "document": doc_id, **member}
            for doc_id, doc in self._containing(subscriber_id)
            for member in doc.get("members") or []
            if member.get("subscriber_id") == subscriber_id
        ]

    def erase_subscriber(self, subscriber_id: str) -> int:
        """Remove the person from every stash document; returns how many documents changed."""

        def without(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is None or subscriber_id not in (doc.get("subscriber_ids") or []):
                return None
            members = [
                m for m in doc.get("members") or [] if m.get("subscriber_id") != subscriber_id
            ]
            ids = [i for i in doc["subscriber_ids"] if i != subscriber_id]
            return {**doc, "members": members, "subscriber_ids": ids}

        found = [doc_id for doc_id, _ in self._containing(subscriber_id)]
        for doc_id in found:
            self._store.update(COLLECTION, doc_id, without)
        return len(found)

    def _containing(self, subscriber_id: str) -> list[tuple[str, dict[str, Any]]]:
        by_member = [Filter("subscriber_ids", "array_contains", subscriber_id)]
        return [item for page in paged(self._store, COLLECTION, by_member) for item in page]


class StashPages:
    """A campaign's stash, page by page in id order, for the dispatcher's walk: the same
    `page(cursor, until)` contract as AudiencePages, one stash page per call."""

    def __init__(self, store: DocumentStore, campaign_id: str) -> None:
        self._store = store
        self._campaign_id = campaign_id
        self._heads = [Filter("campaign_id", "==", campaign_id), Filter("part", "==", 1)]

    def page(self, cursor: str | None, until: str | None = None) -> list[StashedPage]:
        """The next stash page after head id `cursor` (one read, plus one per overflow part),
        or nothing when there is none or, given `until`, when it lies beyond `until`."""
        heads = self._store.query(COLLECTION, self._heads, limit=1, start_after=cursor)
        if not heads or (until is not None and heads[0][0] > until):
            return []
        return [self._joined(*heads[0])]

    def _joined(self, doc_id: str, head: dict[str, Any]) -> StashedPage:
        page, parts = int(head["page"]), int(head.get("parts") or 1)
        docs = [head]
        if parts > 1:
            ids = [part_id(self._campaign_id, page, n) for n in range(2, parts + 1)]
            found = self._store.get_many(COLLECTION, ids)
            missing = [i for i in ids if i not in found]
            if missing:  # only if someone deleted them by hand: send what is left, say so
                log.error("remainder stash parts missing: %s", ", ".join(missing),
                          extra={"campaign_id": self._campaign_id})  # fmt: skip
            docs += [found[i] for i in ids if i in found]
        members: dict[str, Recipient] = {}
        for doc in docs:
            for raw in doc.get("members") or []:
                members.setdefault(raw["subscriber_id"], Recipient(**raw))
        return StashedPage(doc_id, page, parts, list(members.values()))
