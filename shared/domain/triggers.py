"""Behavioural triggers as data: on event X (with conditions on its properties), optionally wait
D, unless event Y happens meanwhile, send template T; with frequency caps, quiet hours in the
subscriber's time zone, and a goal event that counts as a conversion after the mail.

Pure rules only; the definitions are read and validated by shared/domain/trigger_definitions.py.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.domain.behaviour import BehaviourEvent

_DURATION_PART = re.compile(r"(\d+)([dhms])")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "exists")


def parse_duration(text: str) -> float | None:
    """Seconds of "30m", "1h", "3d", "1d12h" (units d, h, m, s), or None when not a duration."""
    if not isinstance(text, str) or not text or _DURATION_PART.sub("", text):
        return None
    return float(sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text)))


def lookup(properties: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) of a dotted path such as "cart.total" in the event's properties."""
    value: Any = properties
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _kind(value: Any) -> str:
    """Comparison kinds: numbers compare with numbers, strings with strings, never across
    (and a boolean is not the number 1)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


@dataclass(frozen=True)
class Condition:
    """`property` (a dotted path) `op` `value` on the event's properties. A missing property
    makes every condition false, `!=` included."""

    property: str
    op: str
    value: Any = None

    def holds(self, properties: Mapping[str, Any]) -> bool:
        found, actual = lookup(properties, self.property)
        if self.op == "exists":
            return found and actual is not None
        if not found:
            return False
        if self.op == "in":
            return any(_kind(actual) == _kind(v) and actual == v for v in self.value)
        same_kind = _kind(actual) == _kind(self.value)
        if self.op == "==":
            return same_kind and actual == self.value
        if self.op == "!=":
            return not (same_kind and actual == self.value)
        if not same_kind or _kind(actual) not in ("number", "str"):
            return False
        return _ORDERING[self.op](actual, self.value)


@dataclass(frozen=True)
class FrequencyCap:
    """At most `max` mails per `per_s` seconds (per subscriber)."""

    max: int
    per_s: float


@dataclass(frozen=True)
class QuietHours:
    """No mail between `start` and `end` (minutes after local midnight; may wrap past it)."""

    start: int
    end: int

    def contains(self, minute: int) -> bool:
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def deferral(self, now: float, timezone: str | None) -> float | None:
        """When the quiet window that `now` falls in ends (epoch seconds), or None when `now`
        is outside quiet hours, in the subscriber's time zone (UTC when unknown)."""
        zone = zone_of(timezone)
        local = datetime.fromtimestamp(now, zone)
        minute = local.hour * 60 + local.minute
        if not self.contains(minute):
            return None
        day = local.date()
        if self.start > self.end and minute >= self.start:
            day += timedelta(days=1)  # the window ends tomorrow morning
        hour, minute_of_hour = divmod(self.end, 60)
        end = datetime(day.year, day.month, day.day, hour, minute_of_hour, tzinfo=zone)
        return max(end.timestamp(), now)


def zone_of(name: str | None) -> ZoneInfo:
    """The IANA zone `name`, or UTC when it is empty or unknown."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


@dataclass(frozen=True)
class Goal:
    """A conversion: `event` from the same subscriber within `within_s` after the mail."""

    event: str
    within_s: float


@dataclass(frozen=True)
class Trigger:
    id: str
    event: str
    template: str
    conditions: tuple[Condition, ...] = ()
    wait_s: float = 0.0
    unless: tuple[str, ...] = ()
    subject: str | None = None
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    goal: Goal | None = None
    description: str = ""

    def matches(self, event: BehaviourEvent) -> bool:
        return event.name == self.event and all(c.holds(event.properties) for c in self.conditions)


@dataclass(frozen=True)
class TriggerSet:
    """Every declared trigger, with the optional cap across all of them."""

    triggers: tuple[Trigger, ...] = ()
    global_cap: FrequencyCap | None = None
    _by_id: dict[str, Trigger] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id.update({t.id: t for t in self.triggers})

    def get(self, trigger_id: str) -> Trigger | None:
        return self._by_id.get(trigger_id)

    def started_by(self, event: BehaviourEvent) -> list[Trigger]:
        return [t for t in self.triggers if t.matches(event)]

    def cancelled_by(self, event_name: str) -> list[Trigger]:
        return [t for t in self.triggers if event_name in t.unless]

    @property
    def longest_cap_s(self) -> float:
        """How far back send history matters for any cap."""
        caps = [t.frequency_cap for t in self.triggers] + [self.global_cap]
        return max((c.per_s for c in caps if c), default=0.0)


def cap_reached(
    sends: Iterable[tuple[str, float]],
    trigger: Trigger,
    global_cap: FrequencyCap | None,
    now: float,
) -> str | None:
    """Which cap one more mail of `trigger` would break ("trigger_cap" or "global_cap"), or
    None. `sends` are the subscriber's earlier trigger mails as (trigger id, sent at)."""
    history = list(sends)
    cap = trigger.frequency_cap
    if cap and sum(1 for t, at in history if t == trigger.id and at > now - cap.per_s) >= cap.max:
        return "trigger_cap"
    if global_cap and sum(1 for _, at in history if at > now - global_cap.per_s) >= global_cap.max:
        return "global_cap"
    return None
