"""The DNS records a sending domain publishes, read the way receivers read them (no I/O).

SPF (RFC 7208): one `v=spf1` record; its DNS-querying terms (include, a, mx, ptr, exists and
the redirect modifier) count towards a limit of 10 over the whole include tree, beyond which
receivers answer permerror and SPF fails for every message. `SpfWalk` walks that tree through
a lookup function given by the caller. DKIM (RFC 6376) and DMARC (RFC 7489) records are
tag=value lists. Written here rather than taken from a library: the few libraries that check
SPF trees talk to DNS themselves, and the doctor must ask the DNS server it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

SPF_LOOKUP_LIMIT = 10
_SPF_LOOKUP_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})
_SPF_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_MODIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*=")
# Second-level labels under which a country-code TLD registers names (co.uk, com.au, ...).
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go"})


def tags(record: str) -> dict[str, str]:
    """`k=v; k2=v2` -> {k: v}; keys lower-cased, whitespace dropped from values (DKIM's p=
    may be split across strings and folded)."""
    found: dict[str, str] = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            found[key.strip().lower()] = "".join(value.split())
    return found


def organizational_domain(domain: str) -> str:
    """The registered domain (DMARC relaxed alignment compares these). An approximation of the
    public suffix list: the last two labels, or three under a ccTLD's second level (co.uk)."""
    labels = domain.lower().strip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def aligned(from_domain: str, other: str, mode: str) -> bool:
    """DMARC identifier alignment: `s`trict wants the same name, `r`elaxed the same
    organizational domain."""
    a, b = from_domain.lower().strip("."), other.lower().strip(".")
    return a == b if mode == "s" else organizational_domain(a) == organizational_domain(b)


def spf_records(txt: list[str]) -> list[str]:
    return [t for t in txt if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


@dataclass
class SpfWalk:
    """The SPF tree below a domain: lookups counted, includes seen, problems found."""

    lookups: int = 0
    includes: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    all_qualifier: str | None = None  # of the top record's `all`, e.g. "-" or "~"
    _visited: set[str] = field(default_factory=set)

    def walk(self, domain: str, txt: Callable[[str], list[str]], top: bool = True) -> None:
        if domain in self._visited:
            self.problems.append(f"{domain} is included twice (a loop)")
            return
        self._visited.add(domain)
        records = spf_records(txt(domain))
        if len(records) != 1:
            what = "no SPF record" if not records else f"{len(records)} SPF records"
            self.problems.append(f"{domain} has {what}")
            return
        for term in records[0].split()[1:]:
            self._term(term, txt, top)
            if self.lookups > SPF_LOOKUP_LIMIT:
                return  # receivers stop here too; no need to read further

    def _term(self, term: str, txt: Callable[[str], list[str]], top: bool) -> None:
        qualifier, name, target = _split_term(term)
        if name not in _SPF_MECHANISMS and name != "redirect" and not _MODIFIER.match(term):
            self.problems.append(f"unknown SPF term {term!r}")
            return
        if name in _SPF_LOOKUP_TERMS:
            self.lookups += 1
        if name == "all" and top:
            self.all_qualifier = qualifier
        if name in ("include", "redirect"):
            if not target:
                self.problems.append(f"{name} without a domain")
                return
            self.includes.add(target.lower())
            self.walk(target.lower(), txt, top=(name == "redirect" and top))


def _split_term(term: str) -> tuple[str, str, str]:
    """(qualifier, mechanism or modifier name, its domain argument)."""
    qualifier = term[0] if term[:1] in "+-~?" else "+"
    body = term[1:] if term[:1] in "+-~?" else term
    if body.lower().startswith("redirect="):
        return qualifier, "redirect", body.partition("=")[2]
    name, _, target = body.partition(":")
    name = name.split("/")[0].lower()
    return qualifier, name, target
