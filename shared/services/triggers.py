"""Triggers: behaviour events start, cancel and (through the sweep) complete trigger runs.

On a message of events, for each event in order:
- an event named in some trigger's `unless` is remembered per subscriber (so a run whose
  starting event arrives later, out of order, is still cancelled when it comes due) and cancels
  the subscriber's waiting runs of those triggers that started at or before it;
- every trigger the event matches gets a run (create-if-absent: the same event twice is one
  run), due at the event's time plus the trigger's wait; a run already due (no wait) is worked
  on at once, so a welcome mail does not wait for the next sweep.
On {"kind": "sweep"} (every minute: Cloud Scheduler on GCP, the local runner's scheduler
locally) the due runs are worked on, at most `sweep_limit` per invocation; when more are due
the sweep hands over to a fresh invocation by publishing another sweep.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

from shared import topology
from shared.domain.behaviour import SWEEP, BehaviourEvent, BehaviourMessage
from shared.domain.errors import TransientError
from shared.domain.triggers import Trigger, TriggerSet
from shared.repositories.trigger_activity import TriggerActivity
from shared.repositories.trigger_runs import TriggerRun, TriggerRuns
from shared.services.publishing import Outbox
from shared.services.trigger_catalog import TriggerCatalog
from shared.services.trigger_sends import Outcome, TriggerSender

log = logging.getLogger(__name__)
LATE_LIMIT_S = 86400.0  # a run whose due time passed this long before its event arrived: none
CANCEL_MARGIN_S = 2 * 86400.0  # how much longer than the longest wait `unless` times are kept


class TriggerService:
    def __init__(
        self,
        catalog: TriggerCatalog,
        runs: TriggerRuns,
        activity: TriggerActivity,
        sender: TriggerSender,
        outbox: Outbox,
        clock: Callable[[], float],
        sweep_limit: int = 200,
    ) -> None:
        self._catalog = catalog
        self._runs = runs
        self._activity = activity
        self._sender = sender
        self._outbox = outbox
        self._clock = clock
        self._sweep_limit = sweep_limit

    def handle(self, message: BehaviourMessage) -> dict[str, int]:
        """Act on one message; returns counts of what happened. Raises InvalidTriggers when
        the definitions are broken (retried, then dead-lettered) and TransientError."""
        if message.kind == SWEEP:
            return self.sweep()
        return self.on_events(message.events)

    def on_events(self, events: Sequence[BehaviourEvent]) -> dict[str, int]:
        triggers = self._catalog.current()
        now = self._clock()
        counts: Counter[str] = Counter()
        cancelled: list[Outcome] = []
        due_now: list[str] = []
        for event in events:
            try:
                cancelled += self._cancel_by(event, triggers, now)
                due_now += self._start_runs(event, triggers, now, counts)
            except TransientError:
                raise  # the store: the whole message is retried
            except Exception:  # this event's data: it fails alone, the message goes on
                log.exception("behaviour event %s could not be applied", event.name,
                              extra={"subscriber_id": event.subscriber_id})  # fmt: skip
                counts["failed"] += 1
        self._sender.record(cancelled, triggers, now)
        counts["cancelled"] += len(cancelled)
        counts.update(o.state for o in self._sender.work(due_now, triggers, now))
        return dict(counts)

    def sweep(self) -> dict[str, int]:
        triggers = self._catalog.current()
        now = self._clock()
        ready = self._runs.ready(now, self._sweep_limit)
        counts = Counter(o.state for o in self._sender.work(ready, triggers, now))
        if len(ready) >= self._sweep_limit:  # more may be due: a fresh invocation goes on
            self._outbox.publish_json(topology.BEHAVIOUR_EVENTS, [{"kind": SWEEP}])
            counts["handed_over"] += 1
        counts["ready"] = len(ready)
        return dict(counts)

    def _start_runs(
        self, event: BehaviourEvent, triggers: TriggerSet, now: float, counts: Counter[str]
    ) -> list[str]:
        """Start a run per matching trigger; returns the ids of those already due."""
        due: list[str] = []
        for trigger in triggers.started_by(event):
            run = self._new_run(trigger, event, now)
            if run is None:
                counts["too_late"] += 1
                continue
            counts["started" if self._runs.start(run) else "duplicate"] += 1
            if run.due_at <= now:  # a duplicate's claim fails unless it is still waiting
                due.append(run.id)
        return due

    def _new_run(self, trigger: Trigger, event: BehaviourEvent, now: float) -> TriggerRun | None:
        """The run `event` starts for `trigger`, or None when its event came too late."""
        due_at = event.occurred_at + trigger.wait_s
        if due_at < now - LATE_LIMIT_S:
            late = now - due_at
            log.warning(
                "event %s came too late for trigger %s (due %.0fs ago)",
                event.name,
                trigger.id,
                late,
                extra={"subscriber_id": event.subscriber_id},
            )
            return None
        return TriggerRun(
            id=TriggerRun.id_for(trigger.id, event.subscriber_id, event.idempotency_key),
            trigger_id=trigger.id,
            subscriber_id=event.subscriber_id,
            event_name=event.name,
            event_at=event.occurred_at,
            idempotency_key=event.idempotency_key,
            created_at=now,
            due_at=due_at,
            properties=event.properties,
        )

    def _cancel_by(self, event: BehaviourEvent, triggers: TriggerSet, now: float) -> list[Outcome]:
        """Remember a cancelling event and cancel the waiting runs it cancels."""
        cancelling = triggers.cancelled_by(event.name)
        if not cancelling:
            return []
        keep_after = now - max(t.wait_s for t in cancelling) - CANCEL_MARGIN_S
        self._activity.record_event(event.subscriber_id, event.name, event.occurred_at, keep_after)
        outcomes = []
        for trigger in cancelling:
            for run in self._runs.waiting(event.subscriber_id, trigger.id):
                done = self._runs.cancel(run.id, event.occurred_at, f"unless:{event.name}", now)
                if done:
                    outcomes.append(Outcome(done, done.state, done.reason))
        return outcomes
