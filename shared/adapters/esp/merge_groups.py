"""Merge groups: which messages of a chunk can share one batch API request.

The rule. Messages go in one request when they have the same `key` (whatever the provider takes
once per request: sender, header names, ...) and their varying parts (html and text; Mailgun
adds the subject) become identical after replacing each message's own per-recipient values
by placeholders. The per-recipient values are found, not declared: each part is split into
tokens (runs of word characters and URL-safe punctuation, so an address or the signed token
of a tracking or unsubscribe link is one token; runs of white space; any other single
character). Messages whose parts have the same token counts are compared position by
position with the group's first message, and each run of positions where any member differs
becomes one placeholder whose value every member carries (SendGrid `substitutions`, Mailgun
`recipient-variables`). First names, addresses and signed links therefore vary while the
template is shared; a message whose values change its token count (a two-word first name
among one-word ones) just starts another group, and a group of one is sent as it is.

Limits keep requests within what providers accept: `max_members` per group, `max_variables`
placeholders, `max_value_bytes` of values per member (SendGrid caps substitutions at 10,000
bytes per personalization). A message containing the provider's placeholder marker is never
merged, since substitution would alter its text. Reassembling the templates with a member's
values gives back that member's parts exactly (tests/unit/test_merge_groups.py checks it on
arbitrary text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[\w.%@+~-]+|\s+|[^\w\s.%@+~-]")
_TRIES_PER_KEY = 3  # open groups compared per message: bounds the work on unmergeable chunks
_VARIABLE_OVERHEAD = 16  # bytes a placeholder key costs in the request, roughly

Position = tuple[int, int]  # (part, token index)


def tokens(text: str) -> list[str]:
    """`text` split so that "".join(tokens(text)) == text."""
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class MergeRules:
    marker: str  # every placeholder contains it; a message containing it is never merged
    placeholder: Callable[[str], str]  # variable name -> its text in the templates
    max_members: int = 1000
    max_variables: int = 100
    max_value_bytes: int = 9000


@dataclass(frozen=True)
class MergeGroup:
    """`members` are positions in the chunk; `values[k]` fills the placeholders for member k."""

    members: list[int]
    templates: tuple[str, ...]
    values: list[dict[str, str]]
    variables: tuple[str, ...] = ()


@dataclass
class _Open:
    """A group being built: the first member's tokens and each member's differences."""

    reference: list[list[str]]
    members: list[int] = field(default_factory=list)
    diffs: list[dict[Position, str]] = field(default_factory=list)
    varying: set[Position] = field(default_factory=set)
    value_bytes: list[int] = field(default_factory=list)

    def token(self, member: int, position: Position) -> str:
        part, index = position
        return self.diffs[member].get(position, self.reference[part][index])

    def try_add(self, index: int, parts: list[list[str]], rules: MergeRules) -> bool:
        if len(self.members) >= rules.max_members:
            return False
        diff = {
            (p, i): tok
            for p, (mine, ref) in enumerate(zip(parts, self.reference, strict=True))
            for i, (tok, ref_tok) in enumerate(zip(mine, ref, strict=True))
            if tok != ref_tok
        }
        new = set(diff) - self.varying
        varying = self.varying | new
        if _runs(varying) > rules.max_variables:
            return False
        grown = [
            size + sum(len(self.token(m, pos).encode()) for pos in new)
            for m, size in enumerate(self.value_bytes)
        ]
        own = sum(len(diff.get((p, i), self.reference[p][i]).encode()) for p, i in varying)
        overhead = _runs(varying) * _VARIABLE_OVERHEAD
        if max([*grown, own]) + overhead > rules.max_value_bytes:
            return False
        self.members.append(index)
        self.diffs.append(diff)
        self.varying = varying
        self.value_bytes = [*grown, own]
        return True

    def build(self, rules: MergeRules) -> MergeGroup:
        """Templates with a placeholder per run of varying positions; runs whose values are the
        same for every member (the same link twice) share one placeholder."""
        names: dict[tuple[str, ...], str] = {}  # every member's value -> placeholder name
        templates = tuple(self._template(p, names, rules) for p in range(len(self.reference)))
        values = [
            {name: column[m] for column, name in names.items()} for m in range(len(self.members))
        ]
        return MergeGroup(list(self.members), templates, values, tuple(names.values()))

    def _template(self, part: int, names: dict[tuple[str, ...], str], rules: MergeRules) -> str:
        ref = self.reference[part]
        out: list[str] = []
        i = 0
        while i < len(ref):
            if (part, i) not in self.varying:
                out.append(ref[i])
                i += 1
                continue
            start = i
            while i < len(ref) and (part, i) in self.varying:
                i += 1
            column = tuple(
                "".join(self.token(m, (part, j)) for j in range(start, i))
                for m in range(len(self.members))
            )
            out.append(rules.placeholder(names.setdefault(column, f"mp{len(names)}")))
        return "".join(out)


def _runs(positions: set[Position]) -> int:
    """How many placeholders `positions` make: adjacent positions share one."""
    return sum(1 for p, i in positions if (p, i - 1) not in positions)


def merge_groups(
    parts: Sequence[Sequence[str]], keys: Sequence[Hashable], rules: MergeRules
) -> list[MergeGroup]:
    """The chunk's messages in groups (each message in exactly one), ordered by first member.
    `parts[i]` are message i's varying texts and `keys[i]` what must be equal to merge."""
    open_by_key: dict[Hashable, list[_Open]] = {}
    order: list[_Open | MergeGroup] = []
    for index, (texts, key) in enumerate(zip(parts, keys, strict=True)):
        if any(rules.marker in text for text in texts):
            order.append(MergeGroup([index], tuple(texts), [{}]))
            continue
        split = [tokens(text) for text in texts]
        full_key = (key, tuple(len(t) for t in split))
        candidates = open_by_key.setdefault(full_key, [])
        if not any(g.try_add(index, split, rules) for g in candidates[-_TRIES_PER_KEY:]):
            group = _Open(split)
            group.try_add(index, split, rules)
            candidates.append(group)
            order.append(group)
    groups: list[MergeGroup] = []
    for item in order:
        groups += _checked(item.build(rules), parts, rules) if isinstance(item, _Open) else [item]
    return groups


def _checked(
    group: MergeGroup, parts: Sequence[Sequence[str]], rules: MergeRules
) -> list[MergeGroup]:
    """The group, or its members one by one if the marker shows up in a template anywhere but
    in a placeholder (shared text next to a placeholder could spell it)."""
    markers = sum(template.count(rules.marker) for template in group.templates)
    placeholders = sum(
        template.count(rules.placeholder(name))
        for template in group.templates
        for name in group.variables
    )
    if markers == placeholders:
        return [group]
    return [MergeGroup([i], tuple(parts[i]), [{}]) for i in group.members]


def fill(template: str, values: dict[str, str], rules: MergeRules) -> str:
    """What the provider does: each placeholder replaced by its value (tests use it)."""
    for name, value in values.items():
        template = template.replace(rules.placeholder(name), value)
    return template
