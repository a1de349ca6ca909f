"""Turning a page of subscribers into a campaign's render batches (pure: no I/O here).

Who is in: confirmed, not suppressed, confirmed before the campaign started (the audience is a
snapshot, so a page replayed later holds the same people), and matched by the segment. With an
A/B test, the hash assignment then splits them into holdout, test cohort (by variant) and
remainder; a phase takes only its own cohort. The test phase also collects the page's remainder
members, which the dispatcher stashes so that the remainder phase need not read the audience
again (shared/repositories/remainder_stash.py).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from shared.domain import ab_test
from shared.domain.ab_test import AbTest
from shared.domain.campaign import PHASE_REMAINDER, PHASE_TEST, Campaign, batch_id
from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.domain.segment import Engaged, Segment
from shared.domain.subscriber import Subscriber

MAX_REQUEST_BYTES = 400_000  # a Pub/Sub push event may carry 512 KB
# Recipients per render batch: ~250 newsletters (about 1.6 KB each compressed) keep a rendered
# SendBatch under the render stage's 400 KB limit, so it is compressed once and never split.
BATCH_SIZE = 250


@dataclass
class PageSelection:
    """One page, sorted: recipients per variant (None without A/B), holdout ids, and how many
    subscribers the page held that may not or should not get this campaign. In the test phase
    also the remainder members, who get the winner later."""

    groups: dict[str | None, list[Subscriber]] = field(default_factory=dict)
    held_out: list[str] = field(default_factory=list)
    excluded: int = 0
    remainder: list[Subscriber] = field(default_factory=list)

    def recipients(self) -> dict[str | None, list[Recipient]]:
        """The groups as what the templates see of each member."""
        return {
            variant: [recipient(s) for s in members] for variant, members in self.groups.items()
        }


@dataclass(frozen=True)
class AudiencePlan:
    campaign_id: str
    segment: Segment
    ab: AbTest | None
    engaged: Engaged
    audience_at: float
    winner: str | None = None

    @classmethod
    def of(cls, campaign: Campaign, engaged: Engaged) -> AudiencePlan:
        return cls(campaign.id, campaign.audience, campaign.ab_test, engaged,
                   campaign.audience_at or campaign.created_at, campaign.winner)  # fmt: skip

    def eligible(self, subscriber: Subscriber) -> bool:
        if not subscriber.mailable:
            return False
        if subscriber.confirmed_at and subscriber.confirmed_at > self.audience_at:
            return False  # joined after the campaign started
        return self.segment.matches(subscriber, self.engaged)

    def select(self, subscribers: Iterable[Subscriber], phase: str) -> PageSelection:
        selection = PageSelection()
        for subscriber in subscribers:
            if not self.eligible(subscriber):
                selection.excluded += 1
                continue
            variant, take = self._place(subscriber, phase, selection)
            if take:
                selection.groups.setdefault(variant, []).append(subscriber)
        return selection

    def _place(
        self, subscriber: Subscriber, phase: str, selection: PageSelection
    ) -> tuple[str | None, bool]:
        """(variant, whether this phase mails the subscriber); records holdout members and, in
        the test phase, the remainder."""
        if self.ab is None:
            return None, True
        assignment = self.ab.assign(self.campaign_id, subscriber.id)
        if phase == PHASE_TEST:
            if assignment.cohort == ab_test.HOLDOUT:
                selection.held_out.append(subscriber.id)
            elif assignment.cohort == ab_test.REMAINDER:
                selection.remainder.append(subscriber)
            return assignment.variant, assignment.cohort == ab_test.TEST
        if phase == PHASE_REMAINDER:
            return self.winner, assignment.cohort == ab_test.REMAINDER
        return None, False

    def split(
        self, members: Sequence[Recipient], phase: str
    ) -> tuple[dict[str | None, list[Recipient]], list[str]]:
        """Snapshot members (already eligible and in the segment) -> this phase's recipients
        per variant, and the holdout ids the test phase records: the same hash assignment
        `select` applies to subscribers."""
        groups: dict[str | None, list[Recipient]] = {}
        held_out: list[str] = []
        for member in members:
            if not member.subscriber_id:  # erased after the snapshot (GDPR): a blank place
                continue
            if self.ab is None:
                groups.setdefault(None, []).append(member)
                continue
            assignment = self.ab.assign(self.campaign_id, member.subscriber_id)
            if phase == PHASE_TEST and assignment.cohort == ab_test.HOLDOUT:
                held_out.append(member.subscriber_id)
            elif phase == PHASE_TEST and assignment.cohort == ab_test.TEST:
                groups.setdefault(assignment.variant, []).append(member)
            elif phase == PHASE_REMAINDER and assignment.cohort == ab_test.REMAINDER:
                groups.setdefault(self.winner, []).append(member)
        return groups, held_out

    def variant_of(self, subscriber_id: str) -> str | None:
        """The variant this subscriber gets (resends): the test variant, or the winner."""
        if self.ab is None:
            return None
        assignment = self.ab.assign(self.campaign_id, subscriber_id)
        if assignment.cohort == ab_test.TEST:
            return assignment.variant
        return self.winner if assignment.cohort == ab_test.REMAINDER else None


def recipient(subscriber: Subscriber) -> Recipient:
    """What the templates see of a subscriber besides first_name and email."""
    return Recipient(
        subscriber.id,
        subscriber.email,
        subscriber.first_name,
        {"attributes": subscriber.attributes},
        tracking=subscriber.tracking,
    )


def render_requests(
    campaign: Campaign,
    batch: str,
    variant: str | None,
    subscribers: Sequence[Subscriber],
) -> list[RenderRequest]:
    """The page's batch for one variant, split (with derived ids) until each part fits."""
    return recipient_requests(campaign, batch, variant, [recipient(s) for s in subscribers])


def recipient_requests(
    campaign: Campaign,
    batch: str,
    variant: str | None,
    recipients: Sequence[Recipient],
) -> list[RenderRequest]:
    """`render_requests` for recipients already built (e.g. read back from the stash). The
    send stage re-checks suppressions added since `audience_at`, the campaign's start, which
    precedes every audience read of the campaign (the stash's included)."""
    template, subject = campaign.content(variant)
    request = RenderRequest(
        batch_id=batch,
        template=template,
        kind=MARKETING,
        audience_at=campaign.audience_at or campaign.created_at,
        recipients=list(recipients),
        campaign_id=campaign.id,
        variant=variant,
        subject=subject,
        sender=campaign.sender,
        track_opens=campaign.track_opens,
        track_clicks=campaign.track_clicks,
        context=campaign.context,
    )
    return _fit(request)


def page_requests(
    campaign: Campaign,
    phase: str,
    page: int,
    groups: Mapping[str | None, Sequence[Recipient]],
    batch_size: int,
    page_size: int,
) -> list[RenderRequest]:
    """The page's render batches: one per variant, in `parts_per_page` parts (ids
    `<batch>.1`, `<batch>.2` ...) so that each rendered batch fits one Pub/Sub message and the
    render stage compresses it once.

    A recipient's part comes from a hash of their id, never from how many others the page
    holds: a page replayed after someone left the audience publishes everyone else under the
    same batch ids, so the send ledger still sends each person once. `page_size`: how many
    recipients a group of the page may hold (the whole page, or see `expected_group`)."""
    parts = parts_per_page(page_size, batch_size)
    requests: list[RenderRequest] = []
    for variant, members in sorted(groups.items(), key=lambda g: g[0] or ""):
        base = batch_id(campaign.id, phase, page, variant if phase == PHASE_TEST else None)
        by_part: dict[int, list[Recipient]] = {}
        for member in members:
            by_part.setdefault(_part_of(member.subscriber_id, parts), []).append(member)
        for number, part in sorted(by_part.items()):
            batch = base if parts == 1 else f"{base}.{number}"
            requests += recipient_requests(campaign, batch, variant, part)
    return requests


def parts_per_page(page_size: int, batch_size: int) -> int:
    return max(1, -(-page_size // max(1, batch_size)))


# How many page sizes (snapshot chunks) one page of a phase may span: enough that a variant's
# expected share of the page fills a batch, but a bounded amount of a page held in memory.
MAX_CHUNKS_PER_PAGE = 20


def group_share(ab: AbTest | None, phase: str) -> float:
    """The share of an audience page that one group (one variant) of this phase is expected
    to hold: an A/B test phase is split over its variants, its remainder gets the winner."""
    if ab is None:
        return 1.0
    if phase == PHASE_TEST:
        return ab.test_fraction / len(ab.variants)
    if phase == PHASE_REMAINDER:
        return max(0.0, 1.0 - ab.test_fraction - ab.holdout_fraction)
    return 1.0


def chunks_per_page(ab: AbTest | None, phase: str, chunk_size: int, batch_size: int) -> int:
    """Snapshot chunks per page, so that each group of the page is expected to fill about one
    batch: an A/B test phase whose variants get a tenth of a chunk each spans several chunks
    (full batches: fewer render and send invocations, ledger documents and checkpoints) rather
    than publishing a few dozen recipients per batch. Computed from the campaign's settings
    only, so that a replayed page spans the same chunks. A group that takes the whole chunk
    (no A/B test) keeps pages of one chunk, the size the operator chose."""
    expected = chunk_size * group_share(ab, phase)
    if expected <= 0 or expected >= chunk_size:
        return 1
    return max(1, min(MAX_CHUNKS_PER_PAGE, int(batch_size // expected)))


def expected_group(ab: AbTest | None, phase: str, page_capacity: int) -> int:
    """How many recipients one group of a page of `page_capacity` rows is expected to hold:
    `page_requests` splits a group into parts by this, not by the whole page's size, so a test
    variant's tenth of a page is one batch rather than a handful of small ones. From the
    campaign's settings only, so a replayed page is split into the same batch ids."""
    return max(1, math.ceil(page_capacity * group_share(ab, phase)))


def _part_of(subscriber_id: str, parts: int) -> int:
    if parts == 1:
        return 1
    digest = hashlib.sha256(subscriber_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % parts + 1


def _fit(request: RenderRequest) -> list[RenderRequest]:
    if len(request.recipients) <= 1 or len(request.encode()) <= MAX_REQUEST_BYTES:
        return [request]
    half = len(request.recipients) // 2
    first = replace(request, batch_id=f"{request.batch_id}.1", recipients=request.recipients[:half])
    second = replace(
        request, batch_id=f"{request.batch_id}.2", recipients=request.recipients[half:]
    )
    return _fit(first) + _fit(second)
