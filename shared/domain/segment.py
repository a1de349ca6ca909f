"""Segments: which confirmed subscribers a campaign goes to, as a JSON spec and a pure evaluator.

A spec is a JSON object (stored on the campaign, posted to the admin API). The empty spec
(`{}` or null) means everyone in the audience. Conditions:

    {"attribute": "plan.tier", "op": "==", "value": "pro"}   dotted path into `attributes`
    {"field": "email", "op": "contains", "value": "@example.org"}
        fields: email, first_name, frequency, timezone
        ops: == != < <= > >= in not_in contains exists
    {"list": "weekly"}   {"tag": "vip"}   {"topic": "product-news"}       membership
    {"signed_up": {"after": "2025-01-01", "before": "2025-07-01"}}        created_at
    {"confirmed": {"after": "2025-01-01T09:00:00+02:00"}}                 confirmed_at
    {"clicked_within_days": 30}   {"opened_within_days": 14}              human engagement
    {"all": [...]}   {"any": [...]}   {"not": {...}}                      combinators

Semantics worth knowing: a missing attribute matches no comparison except `!=` and `not_in`
(it equals nothing); comparing values of different types (a number with a text) is false, never
an error; `contains` is substring on text and membership on a list; dates are ISO 8601 (a date
alone, or a time without zone, means UTC) or epoch seconds.

Engagement is not stored on subscribers (that would be a write per open and click). The
evaluator asks for `engagement_windows()`, the dispatcher answers all of them with one warehouse
query, and `matches` looks the subscriber up in those sets.

Whatever the spec, audiences only ever hold confirmed, unsuppressed subscribers: segments narrow
the audience, they can never widen it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.domain.errors import InvalidInput
from shared.domain.subscriber import Subscriber

MAX_CONDITIONS = 100
MAX_DEPTH = 8
MAX_DAYS = 3650
FIELDS = ("email", "first_name", "frequency", "timezone")
MEMBERSHIPS = {"list": "lists", "tag": "tags", "topic": "topics"}
DATES = {"signed_up": "created_at", "confirmed": "confirmed_at"}
ENGAGEMENT = {"clicked_within_days": "click", "opened_within_days": "open"}
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
OPS = (*COMPARISONS, "in", "not_in", "contains", "exists")
_MISSING = object()


@dataclass(frozen=True)
class EngagementWindow:
    """Human `event_type` events ("open" or "click") in the `days` before the audience time."""

    event_type: str
    days: int


Engaged = Mapping[EngagementWindow, frozenset[str] | set[str]]


class Condition(Protocol):
    def matches(self, subscriber: Subscriber, engaged: Engaged) -> bool: ...


@dataclass(frozen=True)
class Everyone:
    def matches(self, subscriber: Subscriber, engaged: Engaged) -> bool:
        return True


@dataclass(frozen=True)
class Comparison:
    """`value_of(subscriber)` `op` `value`."""

    path: tuple[str, ...]
    in_attributes: bool
    op: str
    value: Any

    def matches(self, subscriber: Subscriber, engaged: Engaged) -> bool:
        actual = self._actual(subscriber)
        if self.op == "exists":
            return (actual is not _MISSING and actual is not None) == bool(self.value)
        if actual is _MISSING or actual is None:
            return self.op in ("!=", "not_in")
        try:
            return self._compare(actual)
        except TypeError:  # "<" between a number and a text: simply not a match
            return False

    def _compare(self, actual: Any) -> bool:
        if self.op == "in":
            return actual in self.value
        if self.op == "not_in":
            return actual not in self.value
        if self.op == "contains":
            if isinstance(actual, str):
                return isinstance(self.value, str) and self.value.lower() in actual.lower()
            return isinstance(actual, list | tuple) and self.value in actual
        if isinstance(actual, bool) != isinstance(self.value, bool):
            return self.op == "!="  # True is not 1 for a marketer
        return COMPARISONS[self.op](actual, self.value)

    def _actual(self, subscriber: Subscriber) -> Any:
        current: Any = subscriber.attributes if self.in_attributes else subscriber
        for index, part in enumerate(self.path):
            if isinstance(current, Mapping):
                current = current.get(part, _MISSING)
            elif index == 0 and not self.in_attributes:
                current = getattr(current, part, _MISSING)
            else:
                return _MISSING
            if current is _MISSING:
                return _MISSING
        return current


@dataclass(frozen=True)
class Membership:
    collection: str  # lists | tags | topics
    name: str

    def matches(self, subscriber: Subscriber, engaged: Engaged) -> bool:
        return self.name in getattr(subscriber, self.collection)


@dataclass(frozen=True)
class DateRange:
    field: str  # created_at | confirmed_at
    after: float | None
    before: float | None

    def matches(self, subscriber: Subscriber, engaged: Engaged) -> bool:
        moment = getattr(subscriber, self.field)
        if not moment:
            return False
        if self.after is not None and moment < self.after:
            return False
        return self.before is None or moment < self.before


@dataclass(frozen=True)
class Engagement:
    window: EngagementWindow

    def matches(self, subscriber: Subscriber, engaged: Engaged) -> bool:
        return subscriber.id in engaged.get(self.window, ())


@dataclass(frozen=True)
class All:
    parts: tuple[Condition, ...]

    def matches(self, subscriber: Subscriber, engaged: Engaged) -> bool:
        return all(p.matches(subscriber, engaged) for p in self.parts)


@dataclass(frozen=True)
class Any_:
    parts: tuple[Condition, ...]

    def matches(self, subscriber: Subscriber, engaged: Engaged) -> bool:
        return any(p.matches(subscriber, engaged) for p in self.parts)


@dataclass(frozen=True)
class Not:
    part: Condition

    def matches(self, subscriber: Subscriber, engaged: Engaged) -> bool:
        return not self.part.matches(subscriber, engaged)


@dataclass(frozen=True)
class Segment:
    """A validated segment. Build it with `Segment.parse(spec)`."""

    spec: dict[str, Any]
    root: Condition
    windows: frozenset[EngagementWindow]

    @classmethod
    def parse(cls, spec: object) -> Segment:
        """Validate and compile; InvalidInput names the offending part (e.g. segment.all[2].op)."""
        if spec is None or spec == {}:
            return cls({}, Everyone(), frozenset())
        parser = _Parser()
        root = parser.condition(spec, "segment", 0)
        assert isinstance(spec, dict)  # the parser refused anything else
        return cls(dict(spec), root, frozenset(parser.windows))

    def engagement_windows(self) -> frozenset[EngagementWindow]:
        """What the dispatcher must look up in the warehouse before evaluating."""
        return self.windows

    def matches(self, subscriber: Subscriber, engaged: Engaged | None = None) -> bool:
        return self.root.matches(subscriber, engaged or {})


class _Parser:
    def __init__(self) -> None:
        self.count = 0
        self.windows: set[EngagementWindow] = set()

    def condition(self, spec: object, where: str, depth: int) -> Condition:
        if not isinstance(spec, dict) or not spec:
            raise _bad(where, "must be a non-empty JSON object")
        self.count += 1
        if self.count > MAX_CONDITIONS:
            raise _bad("segment", f"has more than {MAX_CONDITIONS} conditions")
        if depth > MAX_DEPTH:
            raise _bad(where, f"nests deeper than {MAX_DEPTH} levels")
        kind = _kind(spec, where)
        if kind in ("all", "any", "not"):
            return self._combinator(kind, spec, where, depth)
        if kind in ("attribute", "field"):
            return _comparison(kind, spec, where)
        _only(spec, {kind}, where)
        if kind in MEMBERSHIPS:
            return Membership(MEMBERSHIPS[kind], _name(spec[kind], f"{where}.{kind}"))
        if kind in DATES:
            return _date_range(kind, spec[kind], f"{where}.{kind}")
        return self._engagement(kind, spec[kind], f"{where}.{kind}")

    def _combinator(self, kind: str, spec: dict, where: str, depth: int) -> Condition:
        _only(spec, {kind}, where)
        if kind == "not":
            return Not(self.condition(spec["not"], f"{where}.not", depth + 1))
        parts = spec[kind]
        if not isinstance(parts, list) or not parts:
            raise _bad(f"{where}.{kind}", "must be a non-empty list of conditions")
        compiled = tuple(
            self.condition(p, f"{where}.{kind}[{i}]", depth + 1) for i, p in enumerate(parts)
        )
        return All(compiled) if kind == "all" else Any_(compiled)

    def _engagement(self, kind: str, days: object, where: str) -> Condition:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise _bad(where, f"must be a whole number of days from 1 to {MAX_DAYS}")
        window = EngagementWindow(ENGAGEMENT[kind], days)
        self.windows.add(window)
        return Engagement(window)


_KINDS = ("all", "any", "not", "attribute", "field", *MEMBERSHIPS, *DATES, *ENGAGEMENT)


def _kind(spec: dict, where: str) -> str:
    found = [k for k in _KINDS if k in spec]
    if len(found) != 1:
        what = "no known condition" if not found else f"several conditions ({', '.join(found)})"
        raise _bad(
            where, f"has {what}; use exactly one of {', '.join(_KINDS)} (wrap several in all/any)"
        )
    return found[0]


def _only(spec: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(spec) - allowed)
    if extra:
        raise _bad(where, f"has unexpected key(s) {', '.join(extra)}")


def _comparison(kind: str, spec: dict, where: str) -> Comparison:
    _only(spec, {kind, "op", "value"}, where)
    path = spec[kind]
    if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
        raise _bad(f"{where}.{kind}", "must be a dotted path like plan.tier")
    if kind == "field" and path not in FIELDS:
        raise _bad(f"{where}.field", f"unknown field {path!r}; use one of {', '.join(FIELDS)}")
    op = spec.get("op", "==")
    if op not in OPS:
        raise _bad(f"{where}.op", f"unknown operator {op!r}; use one of {', '.join(OPS)}")
    if "value" not in spec and op != "exists":
        raise _bad(where, f"needs a value to compare with ({op})")
    value = spec.get("value", True)
    if op in ("in", "not_in") and not isinstance(value, list):
        raise _bad(f"{where}.value", f"must be a list for {op}")
    if op in COMPARISONS and isinstance(value, list | dict):
        raise _bad(f"{where}.value", f"must be a single value for {op}")
    return Comparison(tuple(path.split(".")), kind == "attribute", op, value)


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(where, "must be a non-empty name")
    return value


def _date_range(kind: str, spec: object, where: str) -> DateRange:
    if not isinstance(spec, dict) or not spec:
        raise _bad(where, 'must be an object with "after" and/or "before"')
    _only(spec, {"after", "before"}, where)
    after = parse_moment(spec["after"], f"{where}.after") if "after" in spec else None
    before = parse_moment(spec["before"], f"{where}.before") if "before" in spec else None
    if after is not None and before is not None and after >= before:
        raise _bad(where, "after must be earlier than before")
    return DateRange(DATES[kind], after, before)


def parse_moment(value: object, where: str) -> float:
    """Epoch seconds from an ISO 8601 date/datetime (no zone means UTC) or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())  # also takes a date alone
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise _bad(where, f"must be an ISO 8601 date like 2025-01-31 or epoch seconds, not {value!r}")


def _bad(where: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{where} {problem}", field="segment")
