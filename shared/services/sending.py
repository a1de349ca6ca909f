"""Send: one SendBatch -> the provider, exactly once per (batch, recipient) in effect.

The ledger is claimed first; recipients with a final outcome are skipped; suppression is checked
again (anything suppressed since the audience was read); messages go out in chunks and each
chunk's outcomes are checkpointed before the next. A crash can therefore resend at most the one
chunk in flight, with the same Message-ID. A chunk is MAILPIPE_SEND_CHECKPOINT_EVERY messages
(125: a full batch of 250 costs its claim and two checkpoints, each a ledger read and write, where
chunks of 50 took five, ~$0.03 per million emails more; every provider API takes 125 in one call).

A recipient the provider defers on its own (450/451 to its RCPT, greylisting: a transient
result) is retried within the same delivery, soon: the passes of `retry_delays_s` over what is
still deferred, as long as the delivery's `retry_budget_s` allows. Only what is still deferred
after them goes back to the bus (which redelivers the batch after the send subscription's
short backoff), and after `max_attempts` deliveries it is recorded as failed, with the
provider's last answer as its reason (see resend-failed). A server-wide throttle (Throttled:
421, a rate limit, HTTP 429) is the rate limiter's business (it slows the whole sender); one
it could not wait out ends the delivery and the bus redelivers it. Recipients the render stage
could not render (`SendBatch.failed`) are recorded as failed with their reason on arrival.
A mailer that raises something unexpected for a chunk is asked again message by message, so
that only the message that breaks it fails (permanently, with the error as its reason).

Analytics (send, send_failed, suppressed) go out in one message per delivery, before its last
ledger write (done, or the lease given back), rather than one per chunk: a fifth of the
messages and warehouse loads. A delivery that never got to its last write (a crash, a lapsed
lease) leaves the lease set, so the delivery that takes the batch over reports again what the
ledger says was decided before it; event ids are deterministic, so a repeat is deduplicated.

The chunk that leaves no recipient of the batch without a final outcome is checkpointed as
done in the same write (one ledger write per batch fewer: ~$0.01-0.03 per million emails), so
the analytics go out just before that write, its own events with them. A crash between the two
resends that chunk, which is unrecorded, with the same Message-IDs, hence the same event ids.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shared.domain import events as ev
from shared.domain.campaign import phase_of
from shared.domain.errors import AlreadyProcessed, MailpipeError, Throttled, TransientError
from shared.domain.events import AnalyticsEvent, mailbox_provider, stable_id, utc_iso
from shared.domain.messages import MARKETING, TRANSACTIONAL, SendBatch
from shared.ports import Mailer, OutgoingEmail, SendResult
from shared.repositories.send_ledger import DONE, FINAL_OUTCOMES, LedgerEntry, SendLedger
from shared.repositories.suppressions import Suppressions
from shared.services.publishing import Outbox

if TYPE_CHECKING:  # it needs sqlglot, which only functions that re-check audiences ship
    from shared.services.audience_recheck import AudienceRecheck

log = logging.getLogger(__name__)

SUPPRESSION_CLOCK_SKEW_S = 300  # re-check suppressions from a little before the audience read
# Waits before each retry pass over the recipients still deferred: two at once (a deferral is
# often momentary, and the next message's round trip lies between), then a little longer.
RETRY_DELAYS_S = (0.0, 0.0, 0.25, 0.5, 1.0)
RETRY_BUDGET_S = 20.0  # of a delivery's time spent on those passes (the send timeout is 540 s)
MAX_REASON = 300
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
        *,
        recheck: AudienceRecheck | None = None,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        retry_budget_s: float = RETRY_BUDGET_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ledger = ledger
        self._suppressions = suppressions
        self._mailer = mailer
        self._outbox = outbox
        self._clock = clock
        self._chunk_size = chunk_size
        self._max_attempts = max_attempts
        self._gate = campaign_gate
        self._retry_delays = tuple(retry_delays_s)
        self._retry_budget = retry_budget_s
        self._sleep = sleep
        self._recheck = recheck

    def handle(self, batch: SendBatch) -> dict[str, int]:
        """Send what is left of the batch; returns counts per outcome for this delivery.
        Raises AlreadyProcessed (ack), Throttled/TransientError (retry later)."""
        owner = uuid.uuid4().hex
        started = self._clock()
        entry = self._ledger.claim(batch.batch_id, batch.campaign_id, owner, started)
        self._record_render_failures(batch, entry)
        todo = [e for e in batch.emails if not entry.is_final(e.subscriber_id)]
        events = self._unreported(batch, entry) if entry.taken_over else []
        decision = self._gate(batch.campaign_id)
        if decision != "send":
            self._outbox.analytics(events)
            return self._hold(batch, entry, todo, decision)
        counts: dict[str, int] = {}
        deferred: dict[str, SendResult] = {}
        try:
            todo = self._drop_suppressed(batch, entry, todo, counts, events)
            self._send_all(batch, entry, todo, counts, events, deferred)
            self._retry_deferred(batch, entry, counts, events, deferred, started)
            self._fail_exhausted(batch, entry, counts, events, deferred)
        except Exception:  # Throttled, LeaseLost, and any other failure: report what was sent
            self._give_up(entry, events)
            raise
        if entry.state == DONE:  # the last chunk's checkpoint finished it (module docstring)
            return counts
        self._outbox.analytics(events)
        try:
            self._finish(batch, entry)
        except TransientError:
            self._ledger.release(entry, self._clock())
            raise
        return counts

    def _record_render_failures(self, batch: SendBatch, entry: LedgerEntry) -> None:
        """Recipients the render stage could not render: failed, with the reason it gave."""
        new = {s: r for s, r in batch.failed.items() if not entry.is_final(s)}
        if new:
            self._ledger.checkpoint(entry, dict.fromkeys(new, "failed"), self._clock(),
                                    reasons=new)  # fmt: skip

    def _send_all(
        self,
        batch: SendBatch,
        entry: LedgerEntry,
        emails: Sequence[OutgoingEmail],
        counts: dict[str, int],
        events: list[AnalyticsEvent],
        deferred: dict[str, SendResult],
    ) -> None:
        """One pass over `emails` in chunks; `deferred` ends up holding the last transient
        result of each recipient still deferred."""
        for start in range(0, len(emails), self._chunk_size):
            chunk = emails[start : start + self._chunk_size]
            self._send_chunk(batch, entry, chunk, counts, events, deferred)

    def _retry_deferred(
        self,
        batch: SendBatch,
        entry: LedgerEntry,
        counts: dict[str, int],
        events: list[AnalyticsEvent],
        deferred: dict[str, SendResult],
        started: float,
    ) -> None:
        """Passes over the deferred recipients, while the delivery's retry budget allows."""
        for delay in self._retry_delays:
            if not deferred or self._clock() + delay - started > self._retry_budget:
                return
            if delay:
                self._sleep(delay)
            again = [e for e in batch.emails if e.subscriber_id in deferred]
            deferred.clear()
            self._send_all(batch, entry, again, counts, events, deferred)

    def _fail_exhausted(
        self,
        batch: SendBatch,
        entry: LedgerEntry,
        counts: dict[str, int],
        events: list[AnalyticsEvent],
        deferred: dict[str, SendResult],
    ) -> None:
        """On the last delivery the bus makes, what is still deferred fails for good."""
        if not deferred or entry.attempts < self._max_attempts:
            return
        emails = [e for e in batch.emails if e.subscriber_id in deferred]
        reasons = {e.subscriber_id: deferred[e.subscriber_id].detail[:MAX_REASON] for e in emails}
        self._ledger.checkpoint(entry, dict.fromkeys(reasons, "failed"), self._clock(),
                                reasons=reasons)  # fmt: skip
        at = utc_iso(self._clock())
        for email in emails:
            result = deferred.pop(email.subscriber_id)
            counts["failed"] = counts.get("failed", 0) + 1
            events.append(self._event(batch, email, ev.SEND_FAILED, result.detail, result, at))

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
        if suppressed:
            todo = self._drop(batch, entry, todo, suppressed, counts, events)
        return self._drop_left(batch, entry, todo, counts, events)

    def _drop(
        self,
        batch: SendBatch,
        entry: LedgerEntry,
        todo: list[OutgoingEmail],
        suppressed: set[str],
        counts: dict[str, int],
        events: list[AnalyticsEvent],
    ) -> list[OutgoingEmail]:
        dropped = [e for e in todo if e.recipient in suppressed]
        self._ledger.checkpoint(
            entry, {e.subscriber_id: "suppressed" for e in dropped}, self._clock()
        )
        events += [self._event(batch, e, ev.SUPPRESSED, "suppressed") for e in dropped]
        counts["suppressed"] = counts.get("suppressed", 0) + len(dropped)
        return [e for e in todo if e.recipient not in suppressed]

    def _drop_left(
        self,
        batch: SendBatch,
        entry: LedgerEntry,
        todo: list[OutgoingEmail],
        counts: dict[str, int],
        events: list[AnalyticsEvent],
    ) -> list[OutgoingEmail]:
        """A snapshot campaign's recipients who left its audience since the snapshot (one
        warehouse query, shared/services/audience_recheck.py): recorded as suppressed."""
        if self._recheck is None or batch.kind != MARKETING or not batch.campaign_id or not todo:
            return todo
        left = self._recheck.left(batch.campaign_id, batch.audience_at,
                                  [e.subscriber_id for e in todo])  # fmt: skip
        if not left:
            return todo
        addresses = {e.recipient for e in todo if e.subscriber_id in left}
        return self._drop(batch, entry, todo, addresses, counts, events)

    def _send_chunk(
        self,
        batch: SendBatch,
        entry: LedgerEntry,
        chunk: Sequence[OutgoingEmail],
        counts: dict[str, int],
        events: list[AnalyticsEvent],
        deferred: dict[str, SendResult],
    ) -> None:
        try:
            results = self._results(chunk, counts.get("sent", 0) > 0)
        except Throttled:
            log.warning("provider throttled; batch %s will be retried", batch.batch_id)
            raise
        outcomes: dict[str, str] = {}
        reasons: dict[str, str] = {}
        decided: list[AnalyticsEvent] = []
        at = utc_iso(self._clock())  # the chunk's send time, for each of its events
        for email, result in zip(chunk, results, strict=True):
            outcome = self._outcome(entry, email, result)
            outcomes[email.subscriber_id] = outcome
            if outcome == "sent":
                counts["sent"] = counts.get("sent", 0) + 1
                decided.append(self._event(batch, email, ev.SEND, None, result, at))
            elif outcome == "permanent":
                counts["permanent"] = counts.get("permanent", 0) + 1
                reasons[email.subscriber_id] = result.detail[:MAX_REASON]
                decided.append(self._event(batch, email, ev.SEND_FAILED, result.detail, result,
                                           at))  # fmt: skip
            else:
                deferred[email.subscriber_id] = result
        if self._completes(batch, entry, outcomes):
            self._outbox.analytics([*events, *decided])  # before the batch's last write
            events.clear()
            self._ledger.checkpoint(entry, outcomes, self._clock(), state=DONE, reasons=reasons)
            return
        self._ledger.checkpoint(entry, outcomes, self._clock(), reasons=reasons)
        events += decided  # only once recorded: whoever resends an unrecorded chunk reports it

    @staticmethod
    def _completes(batch: SendBatch, entry: LedgerEntry, outcomes: dict[str, str]) -> bool:
        """Whether, with `outcomes`, every recipient of the batch has a final outcome."""
        final = FINAL_OUTCOMES
        return all(
            outcomes.get(e.subscriber_id, entry.outcomes.get(e.subscriber_id, "")) in final
            for e in batch.emails
        ) and all(entry.is_final(s) for s in batch.failed)

    def _results(self, chunk: Sequence[OutgoingEmail], sent_before: bool) -> list[SendResult]:
        """The mailer's results. When it breaks on a chunk with something other than our own
        errors (a message it cannot encode), each message is tried alone, and those that break
        it fail permanently with the error as their reason; when every one breaks it, the fault
        is the adapter's, not a message's (unless it is the only message left of a delivery
        that sent others), and the batch fails: retried, then dead-lettered."""
        try:
            return self._mailer.send(chunk)
        except MailpipeError:
            raise
        except Exception as exc:
            if len(chunk) == 1 and not sent_before:
                raise
            first_error = exc
        results: list[SendResult] = []
        for email in chunk:
            try:
                results += self._mailer.send([email])
            except MailpipeError:
                raise
            except Exception as exc:
                log.warning("the provider adapter failed on one message: %r", exc)
                detail = f"{type(exc).__name__}: {exc}"
                results.append(SendResult(email.message_id, "permanent", detail=detail))
        if len(chunk) > 1 and all(r.status == "permanent" for r in results):
            raise first_error
        return results

    def _outcome(self, entry: LedgerEntry, email: OutgoingEmail, result: SendResult) -> str:
        if result.status != "transient":
            return result.status
        return f"transient:{entry.transient_count(email.subscriber_id) + 1}"

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
