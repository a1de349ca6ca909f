"""The new-campaign form as a campaign spec (the JSON the CLI's --spec and the admin API take).

Framework-free: it reads a form's fields and builds the structure; the rules (what a segment or
an A/B test may be) stay in the domain, which refuses a bad spec with the same words for the
console, the CLI and the admin API.

The segment builder posts groups of condition rows: `seg_match` (all/any) joins the groups, each
group `g<i>_match` (all/any) joins its rows and `g<i>_not` negates it, each row
`g<i>_r<j>_kind / _name / _op / _value` is one condition and `_not` negates it. A non-empty
`segment_json` (any depth of nesting) takes the place of the builder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.domain.errors import InvalidInput

GROUPS, ROWS, VARIANTS = 2, 3, 3
MEMBERSHIP_KINDS = ("list", "tag", "topic")
COMPARISON_KINDS = ("field", "attribute")
DATE_KINDS = ("signed_up", "confirmed")
DAY_KINDS = ("clicked_within_days", "opened_within_days")
KINDS = (*MEMBERSHIP_KINDS, *COMPARISON_KINDS, *DATE_KINDS, *DAY_KINDS)
KIND_LABELS = {
    "list": "is on list", "tag": "has tag", "topic": "follows topic",
    "field": "field (email, first_name, …)", "attribute": "attribute",
    "signed_up": "signed up", "confirmed": "confirmed",
    "clicked_within_days": "clicked within (days)", "opened_within_days": "opened within (days)",
}  # fmt: skip
OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "contains", "exists", "after", "before")
Form = Mapping[str, str]


def spec_from_form(form: Form) -> dict[str, Any]:
    """The campaign spec; InvalidInput (with the CLI's words) for variables or JSON it cannot
    read. Empty optional fields are left out, so the domain applies its defaults."""
    spec: dict[str, Any] = {"name": form.get("name", ""), "template": form.get("template", "")}
    for key in ("subject", "sender"):
        if form.get(key, "").strip():
            spec[key] = form[key]
    segment = segment_from_form(form)
    if segment:
        spec["segment"] = segment
    variables = variables_from_text(form.get("variables", ""))
    if variables:
        spec["context"] = variables
    ab = ab_from_form(form)
    if ab is not None:
        spec["ab"] = ab
    return spec


def variables_from_text(text: str) -> dict[str, str]:
    """KEY=VALUE per line, as `mailpipe campaign create --var KEY=VALUE`."""
    found = {}
    for pair in (line.strip() for line in text.splitlines()):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{pair!r} is not KEY=VALUE", field="variables")
        found[key.strip()] = value.strip()
    return found


def segment_from_form(form: Form) -> dict[str, Any]:
    raw = form.get("segment_json", "").strip()
    if raw:
        return _json(raw, "segment")
    groups = [g for g in (_group(form, i) for i in range(GROUPS)) if g]
    if not groups:
        return {}
    return groups[0] if len(groups) == 1 else {_match(form, "seg_match"): groups}


def ab_from_form(form: Form) -> dict[str, Any] | None:
    if not form.get("ab_enabled"):
        return None
    variants = []
    for k in range(VARIANTS):
        name = form.get(f"v{k}_name", "").strip()
        if not name:
            continue
        variant = {"name": name}
        for key in ("template", "subject"):
            if form.get(f"v{k}_{key}", "").strip():
                variant[key] = form[f"v{k}_{key}"].strip()
        variants.append(variant)
    ab: dict[str, Any] = {"variants": variants, "metric": form.get("ab_metric", "clicks")}
    for key, convert in (("test_fraction", _percent), ("holdout_fraction", _percent),
                         ("window_hours", _number), ("min_sample", _number)):  # fmt: skip
        raw = form.get(f"ab_{key}", "").strip()
        if raw:
            ab[key] = convert(raw, f"ab.{key}")
    return ab


def schedule_moment(local: str, zone: str) -> str:
    """A datetime-local value in a named time zone as ISO 8601 with its offset."""
    try:
        tz = ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {zone!r}", field="at") from exc
    try:
        moment = datetime.fromisoformat(local.strip())
    except ValueError as exc:
        raise InvalidInput(
            f"at must be an ISO 8601 date like 2025-01-31 or epoch seconds, not {local!r}",
            field="at",
        ) from exc
    return moment.replace(tzinfo=tz).isoformat()


def _group(form: Form, i: int) -> dict[str, Any] | None:
    rows = [r for r in (_row(form, f"g{i}_r{j}_") for j in range(ROWS)) if r]
    if not rows:
        return None
    group = rows[0] if len(rows) == 1 else {_match(form, f"g{i}_match"): rows}
    return {"not": group} if form.get(f"g{i}_not") else group


def _row(form: Form, prefix: str) -> dict[str, Any] | None:
    kind = form.get(prefix + "kind", "")
    name = form.get(prefix + "name", "").strip()
    value = form.get(prefix + "value", "").strip()
    if not kind or not (name or value):
        return None
    condition = _condition(kind, name, form.get(prefix + "op", "=="), value)
    return {"not": condition} if form.get(prefix + "not") else condition


def _condition(kind: str, name: str, op: str, value: str) -> dict[str, Any]:
    if kind in MEMBERSHIP_KINDS:
        return {kind: name or value}
    if kind in DATE_KINDS:
        return {kind: {op if op in ("after", "before") else "after": value or name}}
    if kind in DAY_KINDS:
        return {kind: _number(value or name, kind, "segment")}
    if kind in COMPARISON_KINDS:
        condition: dict[str, Any] = {kind: name, "op": op}
        if op != "exists":
            condition["value"] = _values(value) if op in ("in", "not_in") else _value(value)
        return condition
    return {kind: name or value}  # unknown: the domain names it and lists the known ones


def _value(text: str) -> Any:
    """A number, true/false or null as JSON reads it; anything else is text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _values(text: str) -> list[Any]:
    if text.startswith("["):
        parsed = _value(text)
        if isinstance(parsed, list):
            return parsed
    return [_value(part.strip()) for part in text.split(",") if part.strip()]


def _match(form: Form, key: str) -> str:
    return "any" if form.get(key) == "any" else "all"


def _json(raw: str, field: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"not valid JSON: {exc}", field=field) from exc


def _number(raw: str, where: str, field: str = "ab") -> int | float:
    try:
        number = float(raw)
    except ValueError as exc:
        raise InvalidInput(f"{where} must be a number, not {raw!r}", field=field) from exc
    return int(number) if number.is_integer() else number


def _percent(raw: str, where: str) -> float:
    return float(_number(raw, where)) / 100


def describe_segment(spec: Any) -> str:
    """A segment in words, for lists and settings: "on list weekly and not tagged vip"."""
    if not spec:
        return "everyone confirmed"
    if not isinstance(spec, dict) or len(spec) == 0:
        return str(spec)
    for joiner in ("all", "any"):
        if joiner in spec and isinstance(spec[joiner], list):
            word = " and " if joiner == "all" else " or "
            return "(" + word.join(describe_segment(p) for p in spec[joiner]) + ")"
    if "not" in spec:
        return "not " + describe_segment(spec["not"])
    return _describe_condition(spec)


def _describe_condition(spec: dict[str, Any]) -> str:
    words = {"list": "on list", "tag": "tagged", "topic": "follows topic"}
    for kind, word in words.items():
        if kind in spec:
            return f"{word} {spec[kind]}"
    for kind in DATE_KINDS:
        if kind in spec and isinstance(spec[kind], dict):
            label = kind.replace("_", " ")
            return " and ".join(f"{label} {k} {v}" for k, v in spec[kind].items())
    for kind in DAY_KINDS:
        if kind in spec:
            return f"{kind.split('_')[0]} in the last {spec[kind]} days"
    path = spec.get("field") or spec.get("attribute")
    if path:
        op = spec.get("op", "==")
        return f"{path} {op}" + ("" if op == "exists" else f" {json.dumps(spec.get('value'))}")
    return json.dumps(spec)
