"""Dispatch: a campaign phase -> its audience, page by page, as render batches.

One invocation handles one message on campaign-dispatch:

    {"kind": "sweep"}                                   what Cloud Scheduler (or the local
                                                        scheduler thread) sends every 5 minutes
    {"kind": "campaign", "campaign_id": C, "phase": P,  dispatch up to `pages_per_run` pages of
     "token": T}                                        phase P, then hand over to a new message

Per page: read one page of confirmed subscribers (ordered by id, after the cursor), select the
phase's recipients in Python (segment, suppression, A/B cohort), publish one RenderRequest per
variant with the deterministic batch id `C:P:<page>` (`C:test:<page>:<variant>` in the test
phase), record the holdout members, and checkpoint the cursor on the campaign document. Memory
stays flat: at most two pages are held at once.

An A/B campaign reads each subscriber document once. Its test phase also stashes each page's
remainder members (one `campaign_remainders` document per page, replaced on a replay), and
its remainder phase walks that stash instead of the subscribers: one read per page rather than
one per subscriber, with the same cursors, planned ends, batch ids and hand-overs (the cursor
is then a stash document id). Each stash page is deleted once dispatched, and whatever is left
when the phase ends, or when the campaign is cancelled, is purged. The remainder is therefore
the audience as the test phase read it (eligibility, segment, name and attributes then). People
who unsubscribe or are suppressed between the phases are still caught: the send stage drops
recipients suppressed since the campaign's `audience_at`, which precedes the test phase's read.

Exactly-once, step by step: the end of a page is recorded before it is published, so a replay
after a crash publishes the same subscribers under the same batch ids and the send ledger
makes the second copy harmless. A lease on the phase keeps two invocations from walking it at
once; the continuation message carries a token and only the latest token is honoured, so a
duplicated or stale message does nothing. If an invocation dies between two writes, the sweep
notices the stalled phase and sends a fresh continuation.

Daily caps (shared/services/daily_allowance.py): a page is planned only as far as today's
allowance of the sending domain reaches; when nothing is left, the phase is held (lease given
back, `held_until` the next UTC midnight) and the sweep restarts it then, from its cursor.
A snapshot campaign whose subscriber mirror still lags the documents (MirrorBehind) is held
the same way for MIRROR_RECHECK_S, with how many subscribers the mirror lacked. A snapshot too
large for one invocation (SnapshotUnfinished) is handed over like a page: the next invocation
takes it further.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from shared import topology
from shared.domain.campaign import (
    CANCELLED,
    PHASE_HOLDOUT,
    PHASE_REMAINDER,
    PHASE_TEST,
    SENDING,
    Campaign,
    PageOutcome,
    PhaseProgress,
    batch_id,
)
from shared.domain.errors import (
    ConfigurationError,
    Conflict,
    InvalidInput,
    MirrorBehind,
    SnapshotUnfinished,
)
from shared.domain.messages import Recipient
from shared.domain.subscriber import Subscriber
from shared.repositories.audience import AudiencePages
from shared.repositories.audience_snapshots import SnapshotRow
from shared.repositories.campaigns import Campaigns
from shared.repositories.remainder_stash import RemainderStash, StashedPage
from shared.repositories.send_ledger import SendLedger
from shared.services.audience import (
    BATCH_SIZE,
    AudiencePlan,
    chunks_per_page,
    expected_group,
    page_requests,
    recipient,
    render_requests,
)
from shared.services.daily_allowance import DailyAllowance, Taken
from shared.services.engagement import EngagementQueries
from shared.services.pacing import Pacer
from shared.services.publishing import Outbox

if TYPE_CHECKING:  # it needs sqlglot, which only the functions that take snapshots ship
    from shared.services.audience_snapshot import AudienceSnapshotService

log = logging.getLogger(__name__)

SWEEP, CAMPAIGN = "sweep", "campaign"
MIRROR_RECHECK_S = 15.0  # the next sweep after this looks at the mirror again


class PageRow(Protocol):
    @property
    def id(self) -> str: ...


Row = TypeVar("Row", bound=PageRow)


class PageSource(Protocol[Row]):
    """Rows in id order: the next page after `cursor`, or (given `until`) exactly the rows
    after `cursor` up to and including id `until` (AudiencePages, StashPages)."""

    def page(self, cursor: str | None, until: str | None = None) -> list[Row]: ...


def _nothing(rows: list[Any]) -> None:
    return None


def _one(row: Any) -> int:
    return 1


@dataclass(frozen=True)
class PhaseRoute(Generic[Row]):
    """Where a phase's pages come from, how one page is published (campaign, page number,
    rows), and what to do once a page is checkpointed as done."""

    source: PageSource[Row]
    publish: Callable[[Campaign, int, list[Row]], PageOutcome]
    done: Callable[[list[Row]], None] = _nothing
    weight: Callable[[Row], int] = _one  # recipients a row may become (for daily caps)


def new_token() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class DispatchMessage:
    campaign_id: str
    phase: str
    token: str | None = None

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> DispatchMessage:
        campaign_id, phase = request.get("campaign_id"), request.get("phase")
        if not isinstance(campaign_id, str) or not isinstance(phase, str):
            raise InvalidInput("a campaign dispatch message needs campaign_id and phase")
        token = request.get("token")
        return cls(campaign_id, phase, token if isinstance(token, str) else None)

    def to_request(self) -> dict[str, Any]:
        return {"kind": CAMPAIGN, **asdict(self)}


class PhaseDispatcher:
    def __init__(
        self,
        campaigns: Campaigns,
        pages: AudiencePages,
        stash: RemainderStash,
        engagement: EngagementQueries,
        ledger: SendLedger,
        outbox: Outbox,
        clock: Callable[[], float],
        *,
        pages_per_run: int = 50,
        lease_s: float = 300.0,
        batch_size: int = BATCH_SIZE,
        allowance: DailyAllowance | None = None,
        snapshots: AudienceSnapshotService | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._campaigns = campaigns
        self._snapshots = snapshots
        self._pacer = pacer or Pacer()  # publish no faster than the provider sends (pacing.py)
        self._allowance = allowance if allowance is not None and allowance.enabled else None
        self._pages = pages
        self._stash = stash
        self._engagement = engagement
        self._ledger = ledger
        self._outbox = outbox
        self._clock = clock
        self._pages_per_run = pages_per_run
        self._lease_s = lease_s
        self._batch_size = batch_size

    # -- messages ------------------------------------------------------------------------

    def kick(self, campaign_id: str, phase: str, token: str) -> None:
        """Publish the message that (re)starts dispatching `phase` from its checkpoint."""
        message = DispatchMessage(campaign_id, phase, token).to_request()
        self._outbox.publish_json(topology.CAMPAIGN_DISPATCH, [message])

    def publish_batch(
        self, campaign: Campaign, batch: str, variant: str | None, members: Sequence[Subscriber]
    ) -> int:
        """Publish one batch for exactly these subscribers (resume and resend use it)."""
        requests = render_requests(campaign, batch, variant, members)
        self._outbox.publish_json(topology.RENDER_REQUESTS, [r.to_doc() for r in requests])
        return len(requests)

    def forget_stash(self, campaign: Campaign) -> int:
        """Delete what the campaign's remainder stash still holds (it is done or cancelled);
        returns how many documents."""
        return self._stash.purge(campaign.id) if campaign.remainder_stashed else 0

    def plan(self, campaign: Campaign) -> AudiencePlan:
        """The segment, A/B test and engagement sets (one warehouse query, if the segment
        uses engagement) for evaluating pages of this campaign."""
        at = campaign.audience_at or self._clock()
        windows = campaign.audience.engagement_windows()
        return AudiencePlan.of(campaign, self._engagement.engaged(windows, at))

    # -- one invocation ------------------------------------------------------------------

    def run(self, message: DispatchMessage) -> int:
        """Dispatch up to `pages_per_run` pages; returns how many were published."""
        owner = uuid.uuid4().hex
        now = self._clock()
        campaign, claimed = self._campaigns.change(
            message.campaign_id,
            lambda c: c.claim(message.phase, message.token, owner, now, self._lease_s),
        )
        if not claimed:
            log.info("nothing to dispatch", extra=_ids(message))
            return 0
        try:
            return self._walk(campaign, message.phase, owner)
        except MirrorBehind as exc:
            self._wait_for_mirror(campaign, message.phase, owner, exc)
            return 0
        except SnapshotUnfinished:  # its piece is done: the next invocation takes the next
            self._hand_over(campaign, message.phase, owner)
            return 0
        except Conflict as exc:  # the lease was taken over; the new owner carries on
            log.warning("dispatch stopped: %s", exc, extra=_ids(message))
            return 0

    def _walk(self, campaign: Campaign, phase: str, owner: str) -> int:
        route = self._route(campaign, phase)
        rows: list[Any] | None = None
        published = 0
        pace = self._pacer.start()
        while True:
            progress = campaign.progress_of(phase)
            if progress.planned_end is None:
                planned = self._plan_first(campaign, phase, owner, route)
                if planned is None:
                    return published
                campaign, rows = planned
                progress = campaign.progress_of(phase)
            elif rows is None:
                rows = route.source.page(progress.cursor, until=progress.planned_end)
            outcome = route.publish(campaign, progress.page, rows)
            self._allowance_settle(campaign, phase, progress, outcome)
            following = route.source.page(progress.planned_end)
            taken = self._allowed(campaign, phase, progress.page + 1, following, route)
            next_end = taken.rows[-1].id if taken.rows else None
            campaign = self._page_done(campaign.id, phase, owner, outcome, next_end, taken.day)
            route.done(rows)
            published += 1
            pace.after(outcome.recipients)
            if not self._goes_on(campaign, phase, owner, following, taken.rows, published):
                return published
            rows = taken.rows

    def _plan_first(
        self, campaign: Campaign, phase: str, owner: str, route: PhaseRoute[Any]
    ) -> tuple[Campaign, list[Any]] | None:
        """Plan the page after the cursor (within today's allowance); None when the phase is
        finished or held until tomorrow."""
        progress = campaign.progress_of(phase)
        rows = route.source.page(progress.cursor)
        if not rows:
            self._finish(campaign.id, phase, owner)
            return None
        taken = self._allowed(campaign, phase, progress.page, rows, route)
        if not taken.rows:
            self._hold(campaign, phase, owner)
            return None
        last = taken.rows[-1].id
        return self._plan_page(campaign.id, phase, owner, last, taken.day), taken.rows

    def _goes_on(
        self,
        campaign: Campaign,
        phase: str,
        owner: str,
        following: list[Any],
        allowed: list[Any],
        published: int,
    ) -> bool:
        """After a page: finish, hold for tomorrow, hand over, or go on in this invocation."""
        if not following:
            self._finish(campaign.id, phase, owner)
            return False
        if not allowed:
            self._hold(campaign, phase, owner)
            return False
        if campaign.status != SENDING or published >= self._pages_per_run:
            self._hand_over(campaign, phase, owner)
            return False
        return True

    # -- daily caps (shared/services/daily_allowance.py) ----------------------------------

    def _allowed(
        self, campaign: Campaign, phase: str, page: int, rows: list[Any], route: PhaseRoute[Any]
    ) -> Taken:
        if self._allowance is None or not rows:
            return Taken(rows, "")
        return self._allowance.take(campaign, phase, page, rows, route.weight)

    def _allowance_settle(
        self, campaign: Campaign, phase: str, progress: PhaseProgress, outcome: PageOutcome
    ) -> None:
        if self._allowance is not None:
            self._allowance.settle(
                campaign, phase, progress.page, progress.reserved_day, outcome.recipients
            )

    def _hold(self, campaign: Campaign, phase: str, owner: str) -> None:
        """Today's allowance is used up: the sweep goes on when the next day's begins."""
        assert self._allowance is not None
        until, token = self._allowance.resumes_at(), new_token()

        def hold(c: Campaign) -> None:
            c.hold(phase, owner, token, until, self._clock())

        self._campaigns.change(campaign.id, hold)
        log.info("daily cap reached; dispatch goes on tomorrow",
                 extra={"campaign_id": campaign.id, "phase": phase, "until": until})  # fmt: skip

    def _wait_for_mirror(
        self, campaign: Campaign, phase: str, owner: str, behind: MirrorBehind
    ) -> None:
        """The audience cannot be taken yet: the sweep looks again in MIRROR_RECHECK_S."""
        now, token = self._clock(), new_token()
        until = now + MIRROR_RECHECK_S

        def wait(c: Campaign) -> None:
            c.wait_for_mirror(phase, owner, token, until, behind.missing, now)

        self._campaigns.change(campaign.id, wait)
        log.info("waiting for the subscriber mirror: %s", behind,
                 extra={"campaign_id": campaign.id, "missing": behind.missing})  # fmt: skip

    def allowance(self, campaign: Campaign) -> dict[str, Any] | None:
        """Today's allowance of the campaign's sending domain (None: no cap)."""
        return None if self._allowance is None else self._allowance.status(campaign)

    @property
    def takes_snapshots(self) -> bool:
        """Whether campaigns started now select their audience as a snapshot."""
        return self._snapshots is not None

    def _route(self, campaign: Campaign, phase: str) -> PhaseRoute[Any]:
        """A snapshot campaign walks its snapshot; a stashed remainder walks the stash; every
        other phase walks the subscriber documents."""
        if campaign.audience_snapshot:
            return self._snapshot_route(campaign, phase)
        if phase == PHASE_REMAINDER and campaign.remainder_stashed:
            return PhaseRoute(
                self._stash.pages(campaign.id),
                self._publish_stashed,
                lambda rows: self._stash.discard(campaign.id, rows),
                lambda stashed: len(stashed.members),
            )
        plan = self.plan(campaign)

        def publish(current: Campaign, page: int, rows: list[Subscriber]) -> PageOutcome:
            return self._publish_page(current, plan, phase, page, rows)

        return PhaseRoute(self._pages, publish)

    def _snapshot_route(self, campaign: Campaign, phase: str) -> PhaseRoute[Any]:
        """The campaign's audience snapshot (taken now if this is its first phase)."""
        if self._snapshots is None:
            raise ConfigurationError(
                f"campaign {campaign.id} walks an audience snapshot, but this dispatcher has no "
                "snapshot store (MAILPIPE_AUDIENCE_SOURCE=documents?)"
            )
        manifest = self._snapshots.take(campaign)
        plan = AudiencePlan.of(campaign, {})  # segment and engagement were applied in SQL
        chunks = 1
        if campaign.sized_batches:
            chunk_size = self._snapshots.chunk_size
            chunks = chunks_per_page(campaign.ab_test, phase, chunk_size, self._batch_size)
        capacity = chunks * self._snapshots.chunk_size

        def publish(current: Campaign, page: int, rows: list[SnapshotRow]) -> PageOutcome:
            return self._publish_snapshot(current, plan, phase, page, rows, capacity)

        return PhaseRoute(self._snapshots.pages(manifest, chunks), publish)

    def _publish_snapshot(
        self,
        campaign: Campaign,
        plan: AudiencePlan,
        phase: str,
        page: int,
        rows: list[SnapshotRow],
        capacity: int,
    ) -> PageOutcome:
        """A snapshot page (`capacity` rows at most) -> this phase's render batches (A/B
        cohorts by the hash) and the holdout record, as `_publish_page` does for subscriber
        documents."""
        groups, held_out = plan.split([row.member for row in rows], phase)
        batches = self._publish_groups(campaign, phase, page, groups, capacity)
        if held_out:
            holdout_batch = batch_id(campaign.id, PHASE_HOLDOUT, page)
            self._ledger.record_holdout(holdout_batch, campaign.id, held_out, self._clock())
        recipients = sum(len(m) for m in groups.values())
        return PageOutcome(recipients=recipients, held_out=len(held_out), batches=batches)

    def _plan_page(
        self, campaign_id: str, phase: str, owner: str, last_id: str, day: str = ""
    ) -> Campaign:
        def plan(c: Campaign) -> None:
            c.plan_page(phase, owner, last_id, self._clock(), self._lease_s, day)

        return self._campaigns.change(campaign_id, plan)[0]

    def _page_done(
        self,
        campaign_id: str,
        phase: str,
        owner: str,
        outcome: PageOutcome,
        next_end: str | None,
        next_day: str = "",
    ) -> Campaign:
        def done(c: Campaign) -> None:
            c.page_done(phase, owner, outcome, next_end, self._clock(), self._lease_s, next_day)

        return self._campaigns.change(campaign_id, done)[0]

    def _publish_page(
        self, campaign: Campaign, plan: AudiencePlan, phase: str, page: int, rows: list[Subscriber]
    ) -> PageOutcome:
        selection = plan.select(rows, phase)
        if phase == PHASE_TEST and campaign.remainder_stashed:
            remainder = [recipient(s) for s in selection.remainder]
            self._stash.put_page(campaign.id, page, remainder, self._clock())
        batches = self._publish_groups(campaign, phase, page, selection.recipients())
        if selection.held_out:
            holdout_batch = batch_id(campaign.id, PHASE_HOLDOUT, page)
            self._ledger.record_holdout(holdout_batch, campaign.id, selection.held_out,
                                        self._clock())  # fmt: skip
        return PageOutcome(
            recipients=sum(len(m) for m in selection.groups.values()),
            held_out=len(selection.held_out),
            excluded=selection.excluded,
            batches=batches,
        )

    def _publish_stashed(
        self, campaign: Campaign, page: int, rows: list[StashedPage]
    ) -> PageOutcome:
        """A stash page to the remainder's render batches, all with the winner."""
        members = [member for stashed in rows for member in stashed.members]
        batches = self._publish_groups(campaign, PHASE_REMAINDER, page, {campaign.winner: members})
        return PageOutcome(recipients=len(members), batches=batches)

    def _publish_groups(
        self,
        campaign: Campaign,
        phase: str,
        page: int,
        groups: Mapping[str | None, Sequence[Recipient]],
        capacity: int | None = None,
    ) -> int:
        """Publish the page's render batches (the page held `capacity` rows at most: a page
        of subscriber documents unless said); returns how many."""
        filled = {variant: members for variant, members in groups.items() if members}
        group_size = self._pages.page_size
        if campaign.sized_batches:
            group_size = expected_group(campaign.ab_test, phase, capacity or group_size)
        requests = page_requests(campaign, phase, page, filled, self._batch_size, group_size)
        if requests:
            self._outbox.publish_json(topology.RENDER_REQUESTS, [r.to_doc() for r in requests])
        return len(requests)

    def _hand_over(self, campaign: Campaign, phase: str, owner: str) -> None:
        """Release the lease; if still sending, continue in a fresh invocation (a paused
        campaign continues when resumed, which sends its own message)."""
        token = new_token()

        def release(c: Campaign) -> None:
            c.release(phase, owner, token, self._clock())

        campaign, _ = self._campaigns.change(campaign.id, release)
        if campaign.status == SENDING:
            self.kick(campaign.id, phase, token)
        elif campaign.status == CANCELLED:  # the cancel's own purge may have run before this page
            self.forget_stash(campaign)

    def _finish(self, campaign_id: str, phase: str, owner: str) -> None:
        token = new_token()

        def finish(c: Campaign) -> str | None:
            if not c.holds_lease(phase, owner):
                raise Conflict(f"dispatch of {campaign_id}/{phase} was taken over")
            return c.finish_phase(phase, self._clock(), token)

        campaign, following = self._campaigns.change(campaign_id, finish)
        log.info("phase dispatched", extra={"campaign_id": campaign_id, "phase": phase,
                                            "status": campaign.status})  # fmt: skip
        if phase == PHASE_REMAINDER or campaign.status == CANCELLED:
            self.forget_stash(campaign)  # pages whose delete was lost, or a cancelled test
        if following:
            self.kick(campaign_id, following, token)


class DispatchService:
    """The dispatch function's handler: campaign messages to the dispatcher, sweeps to the
    campaign service's sweep."""

    def __init__(self, dispatcher: PhaseDispatcher, sweep: Callable[[], int]) -> None:
        self._dispatcher = dispatcher
        self._sweep = sweep

    def handle(self, request: dict[str, Any]) -> int:
        kind = request.get("kind")
        if kind == SWEEP:
            return self._sweep()
        if kind == CAMPAIGN:
            return self._dispatcher.run(DispatchMessage.from_request(request))
        raise InvalidInput(f"unknown dispatch request kind {kind!r}; expected sweep or campaign")


def _ids(message: DispatchMessage) -> dict[str, str]:
    return {"campaign_id": message.campaign_id, "phase": message.phase}
