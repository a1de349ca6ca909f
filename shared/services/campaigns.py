"""Campaign use cases: create, list, show, schedule, send now, pause, resume, cancel, test send,
preview, resend failed, pick winner, and the sweep that Cloud Scheduler (or the local scheduler
thread) triggers every few minutes. The admin API and the CLI are thin shells over this.

Starting a campaign (send now, or the sweep at its scheduled time) always runs the preview first
and refuses when any variant fails to render, saying which template and line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.domain.ab_test import VariantResult, decide_winner, unit_hash
from shared.domain.campaign import (
    CANCELLED,
    DRAFT,
    MAX_NAME,
    PARK,
    PAUSED,
    PHASE_HOLDOUT,
    PHASE_TEST,
    SEND,
    SENDING,
    SENT,
    TESTING,
    Campaign,
    batch_id,
    campaign_id_from_name,
    gate_decision,
    new_campaign,
    phase_of,
    template_variables,
    variant_of,
)
from shared.domain.errors import Conflict, InvalidInput, MailpipeError, NotFound
from shared.domain.segment import parse_moment
from shared.domain.subscriber import Subscriber
from shared.ports import OutgoingEmail
from shared.repositories.campaigns import CachedStatuses, Campaigns
from shared.repositories.send_ledger import (
    DONE,
    FINAL_OUTCOMES,
    PARKED,
    LedgerEntry,
    SendLedger,
)
from shared.repositories.subscribers import Subscribers
from shared.services.audience import AudiencePlan
from shared.services.campaign_preview import CampaignPreview, PreviewReport
from shared.services.dispatch import PhaseDispatcher, new_token
from shared.services.engagement import EngagementQueries

log = logging.getLogger(__name__)

RESUME_WATCH_S = 3600.0  # how long after a resume the sweep looks for orphaned parked batches
RESUME_GRACE_S = 120.0  # until then it leaves the batches the resume itself republished alone
DELIVERY_WAIT_S = 3600.0  # the A/B window starts at the latest this long after test dispatch
_RENDER_SPLIT = re.compile(r"(\.[ab])+$")  # suffixes the render stage adds to split a batch
# Ledger entries read at a time where a campaign's whole ledger is walked on the pipeline's
# side (an entry holds up to a batch's 250 outcomes): its memory must not grow with the audience.
LEDGER_PAGE = 20
SETTLED = ("sent", "permanent", "suppressed", "skipped", "failed")
MAX_REASONS_SHOWN = 20  # failure reasons a campaign's view carries (a sample, by recipient)
# What a duplicate takes over from the campaign it copies.
COPIED = ("template", "subject", "sender", "segment", "ab", "context", "track_opens",
          "track_clicks")  # fmt: skip


class PreviewFailed(InvalidInput):
    """The campaign would not render; nothing was started. `report` says where and why."""

    def __init__(self, report: PreviewReport) -> None:
        super().__init__(
            f"campaign {report.campaign_id!r} not started: {report.summary()}. "
            "Fix the template and try again; nothing was sent.",
            field="template",
        )
        self.report = report


class CampaignGate:
    """The send stage's question: send, park (paused) or skip (cancelled) a campaign's batch?

    Statuses are cached for a few seconds per process, so a pause takes effect within that
    time. A cached "paused" is re-read before parking, because a resume republishes parked
    batches once and must not see them parked again by a stale cache."""

    def __init__(self, statuses: CachedStatuses) -> None:
        self._statuses = statuses

    def __call__(self, campaign_id: str | None) -> str:
        if not campaign_id:
            return SEND
        decision = gate_decision(self._statuses.status(campaign_id))
        if decision == PARK:
            decision = gate_decision(self._statuses.status(campaign_id, fresh=True))
        return decision


@dataclass
class Delivery:
    """The send ledger's view of a campaign (one document per batch: no per-recipient read).

    `pending`: dispatched recipients without an outcome yet (being rendered or sent, parked,
    or in a batch held in a dead-letter queue); `retrying`: deferred by the provider, to be
    tried again; `failed`: failed for good (permanent refusals, retries run out, could not be
    rendered), with `reasons` (a sample); `held_batches`: the campaign's messages waiting in a
    dead-letter hold. `complete` when every dispatched recipient has its final outcome."""

    batches: int = 0
    open: int = 0
    parked: int = 0
    done: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    dispatched: int = 0
    pending: int = 0
    retrying: int = 0
    failed: int = 0
    held_batches: int = 0
    reasons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, entries: Iterable[LedgerEntry], dispatched: int = 0, held_batches: int = 0
    ) -> Delivery:
        delivery = cls(dispatched=dispatched, held_batches=held_batches)
        outcomes: Counter[str] = Counter()
        resent: Counter[str] = Counter()  # outcomes of resends: of recipients that had failed
        for entry in entries:
            counter = resent if (phase_of(entry.batch_id) or "").startswith("resend") else outcomes
            counter.update(o.split(":")[0] for o in entry.outcomes.values())
            for subscriber_id, reason in entry.reasons.items():
                if len(delivery.reasons) < MAX_REASONS_SHOWN:
                    delivery.reasons[subscriber_id] = reason
            if phase_of(entry.batch_id) == PHASE_HOLDOUT:
                continue  # a record of who was held out, not a batch
            delivery.batches += 1
            delivery.done += entry.state == DONE
            delivery.parked += entry.state == PARKED
            delivery.open += entry.state not in (DONE, PARKED)
        delivery.outcomes = dict(outcomes + resent)
        delivery.retrying = outcomes["transient"] + resent["transient"]
        still_failed = resent["failed"] + resent["permanent"]
        delivery.failed = outcomes["failed"] + outcomes["permanent"] - resent.total() + still_failed
        final = sum(n for k, n in outcomes.items() if k in FINAL_OUTCOMES) - resent["transient"]
        delivery.pending = max(0, dispatched - final - delivery.retrying)
        return delivery

    @property
    def complete(self) -> bool:
        return not (self.pending or self.retrying or self.held_batches or self.open
                    or self.parked)  # fmt: skip

    def summary(self) -> str:
        """What is not final yet, and what failed, in words ("" when all was sent)."""
        parts = [f"{n:,} {what}" for n, what in (
            (self.pending, "pending"), (self.retrying, "retrying"), (self.failed, "failed"),
            (self.held_batches, "in a dead-letter hold (batches)"),
        ) if n]  # fmt: skip
        return ", ".join(parts)

    def status_of(self, status: str) -> str:
        """The campaign's status as people read it: "sent" only once every recipient has its
        final outcome; until then a dispatched campaign is still "delivering"."""
        return "delivering" if status == SENT and not self.complete else status


class CampaignService:
    def __init__(
        self,
        campaigns: Campaigns,
        dispatcher: PhaseDispatcher,
        preview: CampaignPreview,
        ledger: SendLedger,
        subscribers: Subscribers,
        engagement: EngagementQueries,
        clock: Callable[[], float],
        *,
        page_size: int = 500,
        stall_s: float = 900.0,
        held: Callable[[str], int] = lambda campaign_id: 0,
    ) -> None:
        self._campaigns = campaigns
        self._dispatcher = dispatcher
        self._preview = preview
        self._ledger = ledger
        self._subscribers = subscribers
        self._engagement = engagement
        self._clock = clock
        self._page_size = page_size
        self._stall_s = stall_s
        self._held = held

    # -- create and read -----------------------------------------------------------------

    def create(self, spec: dict[str, Any]) -> Campaign:
        """A new draft. InvalidInput for a bad spec or a template that does not exist."""
        name = spec.get("name") if isinstance(spec, dict) else None
        given = spec.get("id") if isinstance(spec, dict) else None
        if given is not None and not isinstance(given, str):
            raise InvalidInput("id must be text", field="id")
        campaign_id = given or campaign_id_from_name(str(name or ""), uuid.uuid4().hex[:6])
        campaign = new_campaign(spec, campaign_id, self._clock())
        missing = self._preview.missing_templates(campaign)
        if missing:
            raise InvalidInput(
                f"no email template {', '.join(repr(m) for m in missing)} "
                "(looked for email/<name>.html in the template store)",
                field="template",
            )
        self._campaigns.create(campaign)
        return campaign

    def get(self, campaign_id: str) -> Campaign:
        return self._campaigns.get(campaign_id)

    def duplicate(self, campaign_id: str) -> Campaign:
        """A new draft with the same content, audience and A/B test (any status may be copied);
        named "<name> (copy)"."""
        source = self._campaigns.get(campaign_id)
        spec = {key: getattr(source, key) for key in COPIED}
        spec["name"] = f"{source.name} (copy)"[:MAX_NAME]
        return self.create(spec)

    def delete_draft(self, campaign_id: str) -> None:
        """Delete a draft; Conflict for any other status (cancel those instead: their history
        and figures stay)."""
        campaign = self._campaigns.get(campaign_id)
        if campaign.status != DRAFT:
            raise Conflict(
                f"cannot delete campaign {campaign_id!r}: it is {campaign.status} "
                "(only drafts can be deleted; cancel it instead)"
            )
        self._campaigns.delete(campaign_id)

    def list_campaigns(self, statuses: Sequence[str] = (), limit: int = 100) -> list[Campaign]:
        return self._campaigns.query(statuses, limit=limit)

    def show(self, campaign_id: str) -> dict[str, Any]:
        """The campaign document, its delivery counts and (A/B) the variants' results."""
        campaign = self._campaigns.get(campaign_id)
        entries = self._ledger.of_campaign(campaign_id)
        shown = campaign.to_doc()
        delivery = self._delivery_of(campaign, entries)
        shown["delivery"] = asdict(delivery) | {"complete": delivery.complete,
                                                "summary": delivery.summary()}  # fmt: skip
        shown["dispatched"] = delivery.dispatched
        shown["dispatch_status"] = campaign.status
        shown["status"] = delivery.status_of(campaign.status)
        shown["allowance"] = self._dispatcher.allowance(campaign)
        shown["mirror_missing"] = campaign.mirror_missing()
        if campaign.ab and (PHASE_TEST in campaign.progress):
            results = self.variant_results(campaign, entries)
            shown["variant_results"] = [asdict(r) | {"rate": r.rate} for r in results.values()]
        return shown

    def sending(self, campaign_id: str) -> dict[str, Any] | None:
        """Dispatch progress and the sending domain's daily cap, for the campaign page; None
        for a campaign this store does not know."""
        try:
            campaign = self._campaigns.get(campaign_id)
        except NotFound:
            return None
        allowance = self._dispatcher.allowance(campaign)
        held = allowance.get("held_until") if allowance else None
        return {
            "status": campaign.status,
            "dispatched": sum(p.recipients for p in campaign.progress.values()),
            "allowance": allowance,
            "held_until": datetime.fromtimestamp(held, UTC) if held else None,
            "mirror_missing": campaign.mirror_missing(),
        }

    def delivery(self, campaign_id: str) -> Delivery:
        campaign = self._campaigns.get(campaign_id)
        return self._delivery_of(campaign, self._ledger.iter_campaign(campaign_id, LEDGER_PAGE))

    def _delivery_of(self, campaign: Campaign, entries: Iterable[LedgerEntry]) -> Delivery:
        dispatched = sum(p.recipients for p in campaign.progress.values())
        return Delivery.of(entries, dispatched, self._held(campaign.id))

    def variant_results(
        self, campaign: Campaign, entries: Iterable[LedgerEntry] | None = None
    ) -> dict[str, VariantResult]:
        """Per variant: test-cohort recipients sent (from the ledger) and how many of them
        converted by the end of the window (one warehouse query). The ledger is read a few
        entries at a time and only counted, so this holds the converters, not the cohort. A
        recipient counts once per test batch that sent to them: the send ledger lets a
        (batch, recipient) be sent once, and the cohort's batches do not overlap."""
        ab = campaign.ab_test
        if ab is None:
            return {}
        until = campaign.test_ends_at or self._clock()
        started = campaign.created_at or 0.0  # none of its events is older
        converted = self._engagement.converters(campaign.id, ab.metric, until, started)
        sent, hits = Counter[str](), Counter[str]()
        for entry in (
            self._ledger.iter_campaign(campaign.id, LEDGER_PAGE) if entries is None else entries
        ):
            variant = variant_of(entry.batch_id)
            if variant is None or phase_of(entry.batch_id) != PHASE_TEST:
                continue
            ids = [s for s, o in entry.outcomes.items() if o == "sent"]
            sent[variant] += len(ids)
            hits[variant] += sum(1 for s in ids if s in converted)
        return {v.name: VariantResult(v.name, sent[v.name], hits[v.name]) for v in ab.variants}

    # -- preview and test ----------------------------------------------------------------

    def preview(
        self, campaign_id: str, sample_size: int = 3, variables: object = None
    ) -> PreviewReport:
        """`variables` (a JSON object) override the campaign's own for this preview only."""
        campaign = _with_variables(self._campaigns.get(campaign_id), variables)
        return self._preview.preview(campaign, sample_size)

    def preview_message(self, campaign_id: str, variant: str | None, sample: str) -> OutgoingEmail:
        """One variant rendered for one sample (a subscriber id or a synthetic sample)."""
        return self._preview.message(self._campaigns.get(campaign_id), variant, sample)

    def test_send(
        self, campaign_id: str, to: str, variant: str | None = None, variables: object = None
    ) -> list[OutgoingEmail]:
        """`variables` override the campaign's own for these test messages only."""
        campaign = _with_variables(self._campaigns.get(campaign_id), variables)
        return self._preview.test_send(campaign, to, variant)

    def _check_renders(self, campaign: Campaign) -> PreviewReport:
        report = self._preview.preview(campaign)
        if not report.ok:
            raise PreviewFailed(report)
        return report

    # -- lifecycle -----------------------------------------------------------------------

    def schedule(self, campaign_id: str, at: object) -> Campaign:
        """Send at `at` (ISO 8601, no zone means UTC, or epoch seconds); preview first."""
        moment = parse_moment(at, "at")
        self._check_renders(self._campaigns.get(campaign_id))
        now = self._clock()
        campaign, _ = self._campaigns.change(campaign_id, lambda c: c.schedule(moment, now))
        return campaign

    def send_now(self, campaign_id: str) -> Campaign:
        """Preview, then start dispatching now (the workers do the rest)."""
        self._check_renders(self._campaigns.get(campaign_id))
        return self._start(campaign_id)

    def _start(self, campaign_id: str) -> Campaign:
        token, now = new_token(), self._clock()
        snapshot = self._dispatcher.takes_snapshots

        def start(c: Campaign) -> str:
            return c.start(now, token, snapshot)

        campaign, phase = self._campaigns.change(campaign_id, start)
        self._dispatcher.kick(campaign_id, phase, token)
        return campaign

    def pause(self, campaign_id: str) -> Campaign:
        now = self._clock()
        return self._campaigns.change(campaign_id, lambda c: c.pause(now))[0]

    def cancel(self, campaign_id: str) -> Campaign:
        """Cancel; the A/B remainder stash is deleted, since no remainder will be sent."""
        now = self._clock()
        campaign = self._campaigns.change(campaign_id, lambda c: c.cancel(now))[0]
        self._dispatcher.forget_stash(campaign)
        return campaign

    def resume(self, campaign_id: str) -> tuple[Campaign, int]:
        """Back to where it was: parked batches are republished under their own batch ids and
        dispatch continues from its cursor. Returns the campaign and the batches republished."""
        token, now = new_token(), self._clock()
        campaign, phase = self._campaigns.change(campaign_id, lambda c: c.resume(now, token))
        republished = self._republish_parked(campaign)
        if phase:
            self._dispatcher.kick(campaign_id, phase, token)
        if campaign.needs_decision(now):
            campaign = self._decide(campaign)
        return campaign, republished

    def _republish_parked(self, campaign: Campaign, since: float | None = None) -> int:
        count = 0
        for batch, parked in self._ledger.parked(campaign.id):
            if since is not None and parked.get("parked_at", 0) < since:
                continue
            members = self._mailable(parked.get("subscriber_ids") or [])
            self._dispatcher.publish_batch(campaign, batch, parked.get("variant"), members)
            count += 1
        return count

    def _mailable(self, subscriber_ids: Sequence[str]) -> list[Subscriber]:
        found: list[Subscriber] = []
        for start in range(0, len(subscriber_ids), 500):
            chunk = self._subscribers.get_many(subscriber_ids[start : start + 500])
            found += [s for s in chunk.values() if s.mailable]
        return sorted(found, key=lambda s: s.id)

    # -- A/B -----------------------------------------------------------------------------

    def pick_winner(self, campaign_id: str, variant: str) -> Campaign:
        """Override the rule: `variant` goes to the remainder (now, or once the test phase is
        dispatched). Allowed until the remainder starts."""
        token, now = new_token(), self._clock()
        decision = {"winner": variant, "source": "manual", "significant": None,
                    "reason": f"picked by hand: {variant}"}  # fmt: skip

        def pick(c: Campaign) -> str | None:
            c.choose_winner(variant, decision, now)
            return c.start_remainder(now, token) if c.status == TESTING else None

        campaign, phase = self._campaigns.change(campaign_id, pick)
        if phase:
            self._dispatcher.kick(campaign_id, phase, token)
        return campaign

    def _decide(self, campaign: Campaign) -> Campaign:
        """The window is over (or a winner was picked): apply the rule if needed, then send
        the remainder."""
        ab = campaign.ab_test
        decision: dict[str, Any] | None = None
        if campaign.winner is None and ab is not None:
            outcome = decide_winner(ab, self.variant_results(campaign))
            decision = {**outcome.to_doc(), "source": "rule"}
            log.info("A/B decision: %s", outcome.reason, extra={"campaign_id": campaign.id})
        token, now = new_token(), self._clock()

        def decide(c: Campaign) -> str:
            if c.winner is None and decision is not None:
                c.choose_winner(decision["winner"], decision, now)
            return c.start_remainder(now, token)

        campaign, phase = self._campaigns.change(campaign.id, decide)
        self._dispatcher.kick(campaign.id, phase, token)
        return campaign

    # -- resend failed -------------------------------------------------------------------

    def resend_failed(self, campaign_id: str) -> dict[str, int]:
        """Republish recipients whose only outcome is "failed" (transient until the attempts
        ran out) under new batch ids `C:resend<n>:<bucket>`. Never anyone already sent, and not
        while a previous resend is still being delivered."""
        campaign = self._campaigns.get(campaign_id)
        entries = self._ledger.of_campaign(campaign_id)
        _require_previous_resends_done(campaign, entries)
        candidates = _only_failed(entries)
        pending = bool(campaign.resends) and campaign.resends[-1]["state"] == "publishing"
        if not candidates and not pending:
            return {"resend": 0, "recipients": 0, "batches": 0}
        buckets = max(1, math.ceil(len(candidates) / self._page_size))
        now = self._clock()
        campaign, resend = self._campaigns.change(
            campaign_id, lambda c: c.begin_resend(len(candidates), buckets, now)
        )
        batches = self._publish_resend(campaign, resend, candidates)
        self._campaigns.change(campaign_id, lambda c: c.finish_resend(resend["n"], batches, now))
        return {"resend": resend["n"], "recipients": len(candidates), "batches": batches}

    def _publish_resend(
        self, campaign: Campaign, resend: dict[str, Any], candidates: Sequence[str]
    ) -> int:
        """Each subscriber's bucket comes from a hash, so publishing the same resend again
        (after a crash) puts everyone in the same batch as the first time."""
        phase = f"resend{resend['n']}"
        plan = AudiencePlan.of(campaign, {})
        groups: dict[tuple[int, str | None], list[Subscriber]] = {}
        for subscriber in self._mailable(candidates):
            variant = plan.variant_of(subscriber.id)
            if campaign.ab and variant is None:
                continue  # holdout members are never mailed
            bucket = int(unit_hash(campaign.id, phase, subscriber.id) * resend["buckets"]) + 1
            groups.setdefault((bucket, variant), []).append(subscriber)
        for (bucket, variant), members in sorted(groups.items(), key=lambda g: str(g[0])):
            batch = batch_id(campaign.id, phase, bucket, variant)
            self._dispatcher.publish_batch(campaign, batch, variant, members)
        return len(groups)

    # -- the sweep -----------------------------------------------------------------------

    def sweep(self) -> int:
        """Start due campaigns, decide A/B tests whose window is over, restart stalled
        dispatches and republish batches parked after a resume. Returns how many acted on."""
        now = self._clock()
        acted = 0
        for campaign in self._campaigns.active():
            try:
                acted += self._sweep_one(campaign, now)
            except MailpipeError as exc:  # one campaign's trouble must not stop the others
                log.error("sweep: %s", exc, extra={"campaign_id": campaign.id})
        for campaign in self._campaigns.recently_resumed(now - RESUME_WATCH_S):
            acted += self._rescue_parked(campaign, now)
        return acted

    def _rescue_parked(self, campaign: Campaign, now: float) -> int:
        """Batches parked by a send worker that still saw the campaign paused after the resume
        republished the parked ones (a race), or left behind by a resume that crashed midway.
        Right after a resume only the former; later all, since the resume's own republished
        batches have been sent by then. Republishing is harmless: same batch ids."""
        if campaign.status in (PAUSED, CANCELLED) or not campaign.resumed_at:
            return 0
        recent = now - campaign.resumed_at < RESUME_GRACE_S
        return int(bool(self._republish_parked(campaign, campaign.resumed_at if recent else None)))

    def _sweep_one(self, campaign: Campaign, now: float) -> int:
        """What the sweep does for one active campaign; 1 when it acted."""
        if campaign.is_due(now):
            return self._start_scheduled(campaign)
        if campaign.awaits_window and self._test_delivered(campaign, now):
            self._campaigns.change(campaign.id, lambda c: c.start_window(now))
            return 1
        if campaign.needs_decision(now):
            self._decide(campaign)
            return 1
        if campaign.is_stalled(now, self._stall_s) and campaign.phase:
            self._restart(campaign.id, campaign.phase, now)
            return 1
        return 0

    def _restart(self, campaign_id: str, phase: str, now: float) -> None:
        token = new_token()
        self._campaigns.change(campaign_id, lambda c: c.rotate_token(phase, token, now))
        log.warning("restarting a stalled dispatch", extra={"campaign_id": campaign_id})
        self._dispatcher.kick(campaign_id, phase, token)

    def _test_delivered(self, campaign: Campaign, now: float) -> bool:
        """Every test batch is done in the ledger, so every variant had the same window.
        After DELIVERY_WAIT_S the window starts anyway (a batch may sit in a dead-letter
        queue); the decision then says how many were exposed."""
        if now - (campaign.test_dispatched_at or now) > DELIVERY_WAIT_S:
            log.warning("A/B window starts before the test cohort was fully delivered",
                        extra={"campaign_id": campaign.id})  # fmt: skip
            return True
        requests: set[str] = set()  # one id per test batch: a few hundred at most
        for entry in self._ledger.iter_campaign(campaign.id, LEDGER_PAGE):
            if phase_of(entry.batch_id) != PHASE_TEST:
                continue
            if entry.state != DONE:
                return False
            requests.add(_RENDER_SPLIT.sub("", entry.batch_id))
        return len(requests) >= campaign.progress_of(PHASE_TEST).batches

    def _start_scheduled(self, campaign: Campaign) -> int:
        report = self._preview.preview(campaign)
        if not report.ok:
            reason = f"not started at its scheduled time: {report.summary()}"
            now = self._clock()
            self._campaigns.change(campaign.id, lambda c: c.unschedule(now, reason))
            log.error(reason, extra={"campaign_id": campaign.id})
            return 1
        self._start(campaign.id)
        return 1


def _only_failed(entries: Sequence[LedgerEntry]) -> list[str]:
    """Subscribers whose every outcome in the campaign is "failed"."""
    failed: set[str] = set()
    other: set[str] = set()
    for entry in entries:
        for subscriber_id, outcome in entry.outcomes.items():
            (failed if outcome == "failed" else other).add(subscriber_id)
    return sorted(failed - other)


def _require_previous_resends_done(campaign: Campaign, entries: Sequence[LedgerEntry]) -> None:
    if campaign.status not in (SENDING, TESTING, SENT):
        raise Conflict(
            f"cannot resend failed recipients of campaign {campaign.id!r}: it is {campaign.status}"
        )
    for resend in campaign.resends:
        if resend["state"] != "published":
            continue
        prefix = f"{campaign.id}:resend{resend['n']}:"
        mine = [e for e in entries if e.batch_id.startswith(prefix)]
        done = {e.batch_id.split(".")[0] for e in mine if e.state == DONE}
        if len(done) < resend["batches"] or any(e.state != DONE for e in mine):
            raise Conflict(
                f"resend {resend['n']} of campaign {campaign.id!r} is still being delivered "
                f"({len(done)} of {resend['batches']} batches done); try again when it is"
            )


def _with_variables(campaign: Campaign, variables: object) -> Campaign:
    if not variables:
        return campaign
    if not isinstance(variables, dict):
        raise InvalidInput("variables must be a JSON object", field="variables")
    merged = template_variables({**campaign.context, **variables})
    return dataclasses.replace(campaign, context=merged)
