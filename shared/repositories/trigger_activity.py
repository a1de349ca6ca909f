"""What the triggers need to remember per subscriber, in one small document each:

    events  {name: [times]}            when cancelling (`unless`) events happened, so one that
                                       arrives before the run it cancels still cancels it
    sends   {run id: [trigger, time]}  recent trigger mails, for the frequency caps

Both are pruned on every write to what can still matter (the longest wait, the longest cap
window), so the document stays a few hundred bytes. A send is reserved under the run's id, so a
run that is retried after a crash does not count twice against a cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.domain.triggers import FrequencyCap, Trigger, cap_reached
from shared.ports import DocumentStore

COLLECTION = "trigger_activity"
MAX_TIMES_PER_EVENT = 50


class TriggerActivity:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def record_event(self, subscriber_id: str, name: str, at: float, keep_after: float) -> None:
        """Remember that `name` happened at `at`; times before `keep_after` are dropped."""

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            doc = dict(doc or {"events": {}, "sends": {}})
            events = {k: [t for t in v if t >= keep_after] for k, v in doc["events"].items()}
            times = events.get(name, [])
            if at in times or at < keep_after:
                return None
            events[name] = sorted([*times, at])[-MAX_TIMES_PER_EVENT:]
            return {**doc, "events": {k: v for k, v in events.items() if v}}

        self._store.update(COLLECTION, subscriber_id, apply)

    def happened(self, subscriber_id: str, names: Iterable[str], start: float, end: float) -> bool:
        """Whether any of the events `names` happened from `start` to `end` (inclusive)."""
        wanted = set(names)
        if not wanted:
            return False
        doc = self._store.get(COLLECTION, subscriber_id) or {}
        return any(
            start <= t <= end
            for name, times in (doc.get("events") or {}).items()
            if name in wanted
            for t in times
        )

    def reserve_send(
        self,
        subscriber_id: str,
        run_id: str,
        trigger: Trigger,
        global_cap: FrequencyCap | None,
        now: float,
        keep_after: float,
    ) -> str | None:
        """Count one mail of `trigger` against the caps, atomically; returns the cap it would
        break ("trigger_cap" or "global_cap", nothing recorded) or None (recorded). The same
        run reserving again is allowed and counted once."""
        verdict: list[str | None] = [None]

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            doc = dict(doc or {"events": {}, "sends": {}})
            sends = {k: v for k, v in doc["sends"].items() if v[1] >= keep_after}
            verdict[0] = None
            if run_id in sends:
                return None
            verdict[0] = cap_reached(
                ((t, at) for t, at in sends.values()), trigger, global_cap, now
            )
            if verdict[0]:
                return None
            return {**doc, "sends": {**sends, run_id: [trigger.id, now]}}

        self._store.update(COLLECTION, subscriber_id, apply)
        return verdict[0]

    def erase_subscriber(self, subscriber_id: str) -> None:
        """Forget the subscriber's activity (GDPR erasure)."""
        self._store.delete(COLLECTION, subscriber_id)
