"""Send: one SendBatch -> the provider, exactly once per (batch, recipient) in effect.

The ledger is claimed first; recipients with a final outcome are skipped; suppression is checked
again (anything suppressed since the audience was read); messages go out in chunks and each
chunk's outcomes are checkpointed before the next. A crash can therefore resend at most the one
chunk in flight, with the same Message-ID. Recipients that failed transiently are retried by
redelivering the batch, up to `max_attempts`, then recorded as failed (see resend-failed).

Analytics (send, send_failed, suppressed) go out in one message per delivery, before its last
ledger write (done, or the lease given back), rather than one per chunk: a fifth of the
messages and warehouse loads. A delivery that never got to its last write (a crash, a lapsed
lease) leaves the lease set, so the delivery that takes the batch over reports again what the
ledger says was decided before it; event ids are deterministic, so a repeat is deduplicated.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

from shared.domain import events as ev
from shared.domain.campaign import phase_of
from shared.domain.errors import AlreadyProcessed, Throttled, TransientError
from shared.domain.events import AnalyticsEvent, mailbox_provider, stable_id, utc_iso
from shared.domain.messages import TRANSACTIONAL, SendBatch
from shared.ports import Mailer, OutgoingEmail, SendResult
from shared.repositories.send_ledger import DONE, LedgerEntry, SendLedger
from shared.repositories.suppressions import Suppressions
from shared.services.publishing import Outbox

log = logging.getLogger(__name__)

SUPPRESSION_CLOCK_SKEW_S = 300  # re-check suppressions from a little before the audience read
CampaignGate = Callable[[str | None], str]  # campaign id -> "send" | "park" | "skip"
# A final ledger outcome -> the analytics event that reports it (see `_unreported`).
_EVENT_OF_OUTCOME = {"sent": ev.SEND, "permanent": ev.SEND_FAILED, "failed": ev.SEND_FAILED,
                     "suppressed": ev.SUPPRESSED}  # fmt: skip


def always_send(campaign_id: str | None) -> str:
    return "send"


class SendService:
    def __init__(
        self,
        ledger: SendLedger,
        suppressions: Suppressions,
        mailer: Mailer,
        outbox: Outbox,
        clock: Callable[[], float],
        chunk_size: int = 50,
        max_attempts: int = 8,
        campaign_gate: CampaignGate = always_send,
    ) -> None:
        self._ledger = ledger
        self._suppressions = suppressions
        self._mailer = mailer
        self._outbox = outbox
        self._clock = clock
        self._chunk_size = chunk_size
        self._max_attempts = max_attempts
        self._gate = campaign_gate

    def handle(self, batch: SendBatch) -> dict[str, int]:
        """Send what is left of the batch; returns counts per outcome for this delivery.
        Raises AlreadyProcessed (ack), Throttled/TransientError (retry later)."""
        owner = uuid.uuid4().hex
        entry = self._ledger.claim(batch.batch_id, batch.campaign_id, owner, self._clock())
        todo = [e for e in batch.emails if not entry.is_final(e.subscriber_id)]
        events = self._unreported(batch, entry) if entry.taken_over else []
        decision = self._gate(batch.campaign_id)
        if decision != "send":
            self._outbox.analytics(events)
            return self._hold(batch, entry, todo, decision)
        counts: dict[str, int] = {}
        try:
            todo = self._drop_suppressed(batch, entry, todo, counts, events)
            for start in range(0, len(todo), self._chunk_size):
                chunk = todo[start : start + self._chunk_size]
                self._send_chunk(batch, entry, chunk, counts, events)
        except Exception:  # Throttled, LeaseLost, and any other failure: report what was sent
            self._give_up(entry, events)
            raise
        self._outbox.analytics(events)
        try:
            self._finish(batch, entry)
        except TransientError:
            self._ledger.release(entry, self._clock())
            raise
        return counts

    def _give_up(self, entry: LedgerEntry, events: list[AnalyticsEvent]) -> None:
        """Report what this delivery decided, then give the lease back so the redelivery may
        claim at once. If reporting fails the lease stays and lapses: the next delivery then
        reports again (see `_unreported`)."""
        self._outbox.analytics(events)
        self._ledger.release(entry, self._clock())

    def _unreported(self, batch: SendBatch, entry: LedgerEntry) -> list[AnalyticsEvent]:
        """The events of outcomes an interrupted earlier delivery recorded but may not have
        reported (what the provider said in detail is not kept, so only the outcome is)."""
        at = utc_iso(self._clock())
        events = []
        for email in batch.emails:
            outcome = entry.outcomes.get(email.subscriber_id, "")
            event_type = _EVENT_OF_OUTCOME.get(outcome)
            if event_type:
                reason = None if outcome == "sent" else outcome
                events.append(self._event(batch, email, event_type, reason, occurred_at=at))
        return events

    def _hold(
        self, batch: SendBatch, entry: LedgerEntry, todo: list[OutgoingEmail], decision: str
    ) -> dict[str, int]:
        """Paused campaigns park the batch (resume republishes it); cancelled ones skip it."""
        if decision == "park":
            ids = [e.subscriber_id for e in todo]
            self._ledger.park(entry, ids, batch.variant, phase_of(batch.batch_id), self._clock())
            raise AlreadyProcessed(f"batch {batch.batch_id} parked: campaign paused")
        outcomes = {e.subscriber_id: "skipped" for e in todo}
        self._ledger.checkpoint(entry, outcomes, self._clock(), state=DONE)
        return {"skipped": len(todo)}

    def _drop_suppressed(
        self,
        batch: SendBatch,
        entry: LedgerEntry,
        todo: list[OutgoingEmail],
        counts: dict[str, int],
        events: list[AnalyticsEvent],
    ) -> list[OutgoingEmail]:
        if batch.kind == TRANSACTIONAL:  # tiny batches to people not yet in any audience
            suppressed = self._suppressions.suppressed_now(e.recipient for e in todo)
        else:
            since = batch.audience_at - SUPPRESSION_CLOCK_SKEW_S
            suppressed = self._suppressions.suppressed_among((e.recipient for e in todo), since)
        if not suppressed:
            return todo
        dropped = [e for e in todo if e.recipient in suppressed]
        self._ledger.checkpoint(
            entry, {e.subscriber_id: "suppressed" for e in dropped}, self._clock()
        )
        events += [self._event(batch, e, ev.SUPPRESSED, "suppressed") for e in dropped]
        counts["suppressed"] = len(dropped)
        return [e for e in todo if e.recipient not in suppressed]

    def _send_chunk(
        self,
        batch: SendBatch,
        entry: LedgerEntry,
        chunk: Sequence[OutgoingEmail],
        counts: dict[str, int],
        events: list[AnalyticsEvent],
    ) -> None:
        try:
            results = self._mailer.send(chunk)
        except Throttled:
            log.warning("provider throttled; batch %s will be retried", batch.batch_id)
            raise
        outcomes: dict[str, str] = {}
        decided: list[AnalyticsEvent] = []
        at = utc_iso(self._clock())  # the chunk's send time, for each of its events
        for email, result in zip(chunk, results, strict=True):
            outcome = self._outcome(entry, email, result)
            outcomes[email.subscriber_id] = outcome
            counts[outcome.split(":")[0]] = counts.get(outcome.split(":")[0], 0) + 1
            if outcome == "sent":
                decided.append(self._event(batch, email, ev.SEND, None, result, at))
            elif outcome in ("permanent", "failed"):
                detail = result.detail
                decided.append(self._event(batch, email, ev.SEND_FAILED, detail, result, at))
        self._ledger.checkpoint(entry, outcomes, self._clock())
        events += decided  # only once recorded: whoever resends an unrecorded chunk reports it

    def _outcome(self, entry: LedgerEntry, email: OutgoingEmail, result: SendResult) -> str:
        if result.status != "transient":
            return result.status
        tries = entry.transient_count(email.subscriber_id) + 1
        return "failed" if entry.attempts >= self._max_attempts else f"transient:{tries}"

    def _finish(self, batch: SendBatch, entry: LedgerEntry) -> None:
        pending = [e for e in batch.emails if not entry.is_final(e.subscriber_id)]
        if pending:  # outcomes are checkpointed; handle() releases the lease
            raise TransientError(
                f"{len(pending)} recipients of {batch.batch_id} failed transiently"
            )
        self._ledger.checkpoint(entry, {}, self._clock(), state=DONE)

    def _event(
        self,
        batch: SendBatch,
        email: OutgoingEmail,
        event_type: str,
        reason: str | None,
        result: SendResult | None = None,
        occurred_at: str | None = None,
    ) -> AnalyticsEvent:
        return AnalyticsEvent(
            event_id=stable_id(event_type, email.message_id),
            event_type=event_type,
            occurred_at=occurred_at or utc_iso(self._clock()),
            subscriber_id=email.subscriber_id,
            campaign_id=batch.campaign_id,
            variant=batch.variant,
            trigger_id=batch.trigger_id,
            provider=self._mailer.name,
            mailbox_provider=mailbox_provider(email.recipient),
            message_id=email.message_id,
            reason=reason,
            properties={"provider_message_id": result.provider_message_id} if result else {},
        )
