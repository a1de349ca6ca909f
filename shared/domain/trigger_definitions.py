"""Reading and validating the trigger definitions file (templates/triggers/triggers.yaml).

    version: 1
    global_frequency_cap: {max: 3, per: 1d}      # optional, across all triggers
    triggers:
      - id: cart_abandonment                     # lowercase slug, unique
        event: cart_abandoned                    # the event that starts a run
        conditions:                              # optional; all must hold
          - {property: items, op: exists}
          - {property: cart.total, op: ">=", value: 10}
        wait: 1h                                 # optional: 30m, 1h, 3d, 1d12h (default 0)
        unless: [purchase]                       # optional: events that cancel while waiting
        template: cart_abandoned                 # templates/email/<template>.html
        subject: You left something behind       # optional; default: the template's <title>
        frequency_cap: {max: 1, per: 24h}        # optional, per subscriber and trigger
        quiet_hours: "21:00-08:00"               # optional, in the subscriber's time zone
        goal: {event: purchase, within: 3d}      # optional: the conversion after the mail

Every problem is reported at once, each with its place ("triggers[0] (cart_abandonment).wait:
...") so one run of `mailpipe triggers validate` shows everything to fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from typing import Any

import yaml

from shared.domain.behaviour import EVENT_NAME
from shared.domain.errors import ConfigurationError
from shared.domain.triggers import (
    OPERATORS,
    Condition,
    FrequencyCap,
    Goal,
    QuietHours,
    Trigger,
    TriggerSet,
    parse_duration,
)

TRIGGER_ID = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
PROPERTY_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_WAIT_S = 90 * 86400
MAX_CAP_WINDOW_S = 90 * 86400

_TOP_KEYS = frozenset({"version", "global_frequency_cap", "triggers"})
_TRIGGER_KEYS = frozenset({
    "id", "description", "event", "conditions", "wait", "unless", "template", "subject",
    "frequency_cap", "quiet_hours", "goal",
})  # fmt: skip
Problems = Iterator[str]


class InvalidTriggers(ConfigurationError):
    """The definitions break the rules; `problems` lists each with its place."""

    def __init__(self, source: str, problems: list[str]) -> None:
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{source}: {len(problems)} problem(s) in the trigger definitions:\n{listed}"
        )
        self.problems = problems


def load_yaml(text: str, templates: Collection[str] | None, source: str) -> TriggerSet:
    """The triggers in a YAML document; `templates` are the known email template names (None:
    not checked). Raises InvalidTriggers naming every problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidTriggers(source, [f"not valid YAML: {exc}"]) from exc
    return parse(document, templates, source)


def parse(document: Any, templates: Collection[str] | None, source: str) -> TriggerSet:
    problems = list(_document_problems(document, templates))
    if problems:
        raise InvalidTriggers(source, problems)
    document = document or {}  # an empty file declares no triggers
    triggers = tuple(_trigger(raw) for raw in document.get("triggers") or [])
    return TriggerSet(triggers, _cap(document.get("global_frequency_cap")))


# --- problems ------------------------------------------------------------------------------
def _document_problems(document: Any, templates: Collection[str] | None) -> Problems:
    if document is None:
        return  # an empty file declares no triggers
    if not isinstance(document, dict):
        yield "the file must be a mapping with a `triggers:` list"
        return
    yield from _unknown_keys("", document, _TOP_KEYS)
    if document.get("version", 1) != 1:
        yield "version: only version 1 exists"
    if "global_frequency_cap" in document:
        yield from _cap_problems("global_frequency_cap", document["global_frequency_cap"])
    triggers = document.get("triggers") or []
    if not isinstance(triggers, list):
        yield "triggers: must be a list of triggers"
        return
    seen: set[str] = set()
    for index, raw in enumerate(triggers):
        label = f"triggers[{index}]"
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            label += f" ({raw['id']})"
            if raw["id"] in seen:
                yield f"{label}.id: {raw['id']!r} is declared twice"
            seen.add(raw["id"])
        yield from _trigger_problems(label, raw, templates)


def _unknown_keys(label: str, raw: dict[Any, Any], known: frozenset[str]) -> Problems:
    where = f"{label}." if label else ""
    for key in raw:
        if key is True:  # YAML 1.1 reads a bare `on:` key as the boolean true
            yield f"{where}on: write `event:` for the event that starts the trigger"
        elif key not in known:
            yield f"{where}{key}: unknown key; expected one of {', '.join(sorted(known))}"


def _trigger_problems(label: str, raw: Any, templates: Collection[str] | None) -> Problems:
    if not isinstance(raw, dict):
        yield f"{label}: each trigger must be a mapping"
        return
    yield from _unknown_keys(label, raw, _TRIGGER_KEYS)
    if not isinstance(raw.get("id"), str) or not TRIGGER_ID.match(raw["id"]):
        yield f"{label}.id: required, a lowercase slug such as cart_abandonment"
    yield from _event_name_problems(f"{label}.event", raw.get("event"))
    yield from _template_problems(f"{label}.template", raw.get("template"), templates)
    for key, check in _OPTIONAL_CHECKS.items():
        if raw.get(key) is not None:
            yield from check(f"{label}.{key}", raw[key])
    if isinstance(raw.get("unless"), list | str) and raw.get("event") in _names(raw["unless"]):
        yield f"{label}.unless: must not contain the trigger's own event"


def _event_name_problems(label: str, value: Any) -> Problems:
    if not isinstance(value, str) or not EVENT_NAME.match(value):
        yield f"{label}: required, an event name such as cart_abandoned"


def _template_problems(label: str, value: Any, templates: Collection[str] | None) -> Problems:
    if not isinstance(value, str) or not TEMPLATE_NAME.match(value):
        yield f"{label}: required, the name of an email template (templates/email/<name>.html)"
    elif templates is not None and value not in templates:
        yield f"{label}: unknown template {value!r}; known: {', '.join(sorted(templates))}"


def _conditions_problems(label: str, value: Any) -> Problems:
    if not isinstance(value, list):
        yield f"{label}: must be a list of {{property, op, value}}"
        return
    for index, raw in enumerate(value):
        yield from _condition_problems(f"{label}[{index}]", raw)


def _condition_problems(label: str, raw: Any) -> Problems:
    if not isinstance(raw, dict):
        yield f"{label}: must be a mapping such as {{property: total, op: '>=', value: 10}}"
        return
    yield from _unknown_keys(label, raw, frozenset({"property", "op", "value"}))
    if not isinstance(raw.get("property"), str) or not PROPERTY_PATH.match(raw["property"]):
        yield f"{label}.property: required, a property name or dotted path such as cart.total"
    op = raw.get("op")
    if op not in OPERATORS:
        yield f"{label}.op: must be one of {', '.join(OPERATORS)} (quote them in YAML)"
    elif op == "exists" and "value" in raw:
        yield f"{label}.value: `exists` takes no value"
    elif op == "in" and not isinstance(raw.get("value"), list):
        yield f"{label}.value: `in` needs a list of values"
    elif op in ("<", "<=", ">", ">=") and not _orderable(raw.get("value")):
        yield f"{label}.value: `{op}` needs a number or a string"
    elif op in ("==", "!=") and "value" not in raw:
        yield f"{label}.value: `{op}` needs a value"


def _orderable(value: Any) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool)


def _wait_problems(label: str, value: Any) -> Problems:
    seconds = parse_duration(value)
    if seconds is None:
        yield f"{label}: {value!r} is not a duration such as 30m, 1h or 3d"
    elif seconds > MAX_WAIT_S:
        yield f"{label}: at most {MAX_WAIT_S // 86400}d"


def _unless_problems(label: str, value: Any) -> Problems:
    names = _names(value)
    if not names or not all(isinstance(n, str) and EVENT_NAME.match(n) for n in names):
        yield f"{label}: an event name or a list of event names"


def _cap_problems(label: str, value: Any) -> Problems:
    if not isinstance(value, dict) or set(value) != {"max", "per"}:
        yield f"{label}: must be {{max: <mails>, per: <duration>}}, such as {{max: 1, per: 24h}}"
        return
    if not isinstance(value["max"], int) or isinstance(value["max"], bool) or value["max"] < 1:
        yield f"{label}.max: a whole number of mails, at least 1"
    seconds = parse_duration(value["per"])
    if not seconds or seconds > MAX_CAP_WINDOW_S:
        yield f"{label}.per: {value['per']!r} is not a duration from 1s to 90d, such as 24h"


def _quiet_hours_problems(label: str, value: Any) -> Problems:
    if _quiet_hours(value) is None:
        yield f'{label}: {value!r} is not a window such as "21:00-08:00" (quote it in YAML)'


def _goal_problems(label: str, value: Any) -> Problems:
    if not isinstance(value, dict) or set(value) != {"event", "within"}:
        yield f"{label}: must be {{event: <name>, within: <duration>}}"
        return
    yield from _event_name_problems(f"{label}.event", value["event"])
    if not parse_duration(value["within"]):
        yield f"{label}.within: {value['within']!r} is not a duration such as 3d"


def _subject_problems(label: str, value: Any) -> Problems:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        yield f"{label}: a line of text of at most 200 characters"


def _description_problems(label: str, value: Any) -> Problems:
    if not isinstance(value, str):
        yield f"{label}: must be text"


_OPTIONAL_CHECKS: dict[str, Callable[[str, Any], Problems]] = {
    "conditions": _conditions_problems,
    "wait": _wait_problems,
    "unless": _unless_problems,
    "frequency_cap": _cap_problems,
    "quiet_hours": _quiet_hours_problems,
    "goal": _goal_problems,
    "subject": _subject_problems,
    "description": _description_problems,
}


# --- building (after validation) -------------------------------------------------------------
def _names(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value or [])


def _quiet_hours(value: Any) -> QuietHours | None:
    if not isinstance(value, str) or value.count("-") != 1:
        return None
    start, end = (_CLOCK.match(part.strip()) for part in value.split("-"))
    if not start or not end:
        return None
    window = QuietHours(int(start[1]) * 60 + int(start[2]), int(end[1]) * 60 + int(end[2]))
    return window if window.start != window.end else None


def _cap(value: Any) -> FrequencyCap | None:
    return FrequencyCap(value["max"], parse_duration(value["per"]) or 0.0) if value else None


def _trigger(raw: dict[str, Any]) -> Trigger:
    goal = raw.get("goal")
    return Trigger(
        id=raw["id"],
        event=raw["event"],
        template=raw["template"],
        conditions=tuple(
            Condition(c["property"], c["op"], c.get("value")) for c in raw.get("conditions") or []
        ),
        wait_s=parse_duration(raw.get("wait") or "0s") or 0.0,
        unless=tuple(_names(raw.get("unless"))),
        subject=raw.get("subject"),
        frequency_cap=_cap(raw.get("frequency_cap")),
        quiet_hours=_quiet_hours(raw["quiet_hours"]) if raw.get("quiet_hours") else None,
        goal=Goal(goal["event"], parse_duration(goal["within"]) or 0.0) if goal else None,
        description=str(raw.get("description") or ""),
    )
