"""The due step of a trigger run: claim it, decide, and hand the mail to the render stage.

For each run: claim (waiting -> sending, transactional: a concurrent sweep sees it taken), then
in order: the subscriber must exist, be confirmed and unsuppressed; no `unless` event may have
happened since the starting event (one that arrived out of order included); inside quiet hours
the run goes back to waiting until they end; the frequency caps must allow one more mail. Then a
RenderRequest whose batch id is the run id goes to render-requests: the send ledger, keyed by
batch id, sends it once even when a crashed sweep's successor publishes it again. Every final
outcome is written to the warehouse (a `custom` event named mailpipe.trigger_run, carrying the
trigger's goal for the conversion figures) before the run is marked final.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from shared import topology
from shared.domain import events as ev
from shared.domain.behaviour import TRIGGER_RUN
from shared.domain.errors import TransientError
from shared.domain.events import AnalyticsEvent, stable_id, utc_iso
from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.domain.subscriber import Subscriber
from shared.domain.triggers import Trigger, TriggerSet
from shared.repositories.subscribers import Subscribers
from shared.repositories.suppressions import Suppressions
from shared.repositories.trigger_activity import TriggerActivity
from shared.repositories.trigger_runs import (
    CANCELLED,
    CAPPED,
    FAILED,
    SENT,
    SKIPPED,
    TriggerRun,
    TriggerRuns,
)
from shared.services.publishing import Outbox

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5  # claims of one run before it is recorded as failed


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its final state and, when there is one, why."""

    run: TriggerRun
    state: str
    detail: str | None = None


class TriggerSender:
    def __init__(
        self,
        runs: TriggerRuns,
        activity: TriggerActivity,
        subscribers: Subscribers,
        suppressions: Suppressions,
        outbox: Outbox,
        message_id: Callable[[str, str], str],
        lease_s: float,
    ) -> None:
        self._runs = runs
        self._activity = activity
        self._subscribers = subscribers
        self._suppressions = suppressions
        self._outbox = outbox
        self._message_id = message_id  # (batch id, subscriber id) -> the rendered Message-ID
        self._lease_s = lease_s

    def work(self, run_ids: Sequence[str], triggers: TriggerSet, now: float) -> list[Outcome]:
        """Take each run that is there to take and carry it to a final state (or defer it);
        returns the final outcomes. A run that fails unexpectedly keeps its lease and is taken
        again after it lapses; the others go on."""
        outcomes: list[Outcome] = []
        for run_id in run_ids:
            run = self._runs.claim(run_id, now, self._lease_s)
            if run is None:
                continue
            try:
                outcome = self._decide(run, triggers, now)
            except TransientError:
                raise
            except Exception:
                log.exception("trigger run %s failed; it is retried when its lease lapses", run_id)
                continue
            if outcome:
                outcomes.append(outcome)
        self.record(outcomes, triggers, now)
        for outcome in outcomes:
            self._runs.finish(outcome.run, outcome.state, outcome.detail, now)
        return outcomes

    def record(self, outcomes: Sequence[Outcome], triggers: TriggerSet, now: float) -> None:
        """Warehouse rows for final outcomes (one message for all of them)."""
        if outcomes:
            rows = [self._row(o, triggers.get(o.run.trigger_id), now) for o in outcomes]
            self._outbox.analytics(rows)

    def _decide(self, run: TriggerRun, triggers: TriggerSet, now: float) -> Outcome | None:
        trigger = triggers.get(run.trigger_id)
        if trigger is None:
            return Outcome(run, SKIPPED, "trigger_removed")
        if run.attempts > MAX_ATTEMPTS:
            return Outcome(run, FAILED, f"gave up after {MAX_ATTEMPTS} attempts")
        subscriber = self._subscribers.find(run.subscriber_id)
        refusal = self._refusal(subscriber)
        if refusal or subscriber is None:
            return Outcome(run, SKIPPED, refusal or "unknown_subscriber")
        if self._activity.happened(run.subscriber_id, trigger.unless, run.event_at, now):
            return Outcome(run, CANCELLED, "unless_event_before_due")
        quiet = trigger.quiet_hours
        quiet_until = quiet.deferral(now, subscriber.timezone) if quiet else None
        if quiet_until is not None:
            self._runs.defer(run, quiet_until, "quiet_hours")
            return None
        keep_after = now - triggers.longest_cap_s
        cap = self._activity.reserve_send(
            subscriber.id, run.id, trigger, triggers.global_cap, now, keep_after
        )
        if cap:
            return Outcome(run, CAPPED, cap)
        self._publish(run, trigger, subscriber, now)
        return Outcome(run, SENT)

    def _refusal(self, subscriber: Subscriber | None) -> str | None:
        """Why this subscriber may not get marketing mail now, or None."""
        if subscriber is None:
            return "unknown_subscriber"
        if not subscriber.mailable:
            if subscriber.suppressed:
                return f"suppressed:{subscriber.suppressed}"
            return f"not_confirmed:{subscriber.status}"
        reason = self._suppressions.reason(subscriber.email)
        return f"suppressed:{reason}" if reason else None

    def _publish(
        self, run: TriggerRun, trigger: Trigger, subscriber: Subscriber, now: float
    ) -> None:
        variables = dict(run.properties)  # the event's properties: the template's variables
        recipient = Recipient(
            subscriber.id, subscriber.email, subscriber.first_name, variables, subscriber.tracking
        )
        request = RenderRequest(
            batch_id=run.id,
            template=trigger.template,
            kind=MARKETING,
            audience_at=now,
            recipients=[recipient],
            trigger_id=trigger.id,
            subject=trigger.subject,
            context={"trigger_id": trigger.id, "event_name": run.event_name},
        )
        self._outbox.publish_json(topology.RENDER_REQUESTS, [asdict(request)])

    def _row(self, outcome: Outcome, trigger: Trigger | None, now: float) -> AnalyticsEvent:
        run = outcome.run
        sent = outcome.state == SENT
        goal = trigger.goal if trigger and sent else None
        return AnalyticsEvent(
            event_id=stable_id("trigger-run", run.id),
            event_type=ev.CUSTOM,
            occurred_at=utc_iso(now),
            subscriber_id=run.subscriber_id,
            trigger_id=run.trigger_id,
            message_id=self._message_id(run.id, run.subscriber_id) if sent else None,
            reason=outcome.state,
            properties={
                "name": TRIGGER_RUN,
                "run_id": run.id,
                "event": run.event_name,
                "detail": outcome.detail,
                "goal": goal.event if goal else None,
                "goal_within_s": int(goal.within_s) if goal else None,
            },
        )
