"""What an import file may look like, and how its cells become a subscriber.

Pure rules, no I/O: the delimiter sniffed from the header line (`,` `;` or tab), each header
matched to a field case-insensitively and by common synonyms (so exports of Mailchimp and
listmonk import unchanged), and one row of cells turned into an ImportRow or an InvalidInput
saying what is wrong with it.

Fields a column can be mapped to:
    email, first_name, lists, tags, topics     the subscriber's own fields (names in lists,
                                               tags and topics separated by , ; or |)
    status                                     the source's subscription status (see STATUSES)
    unsubscribed_at, cleaned_at                a value there means unsubscribed / cleaned
                                               (Mailchimp's UNSUB_TIME and CLEAN_TIME)
    timezone                                   an IANA time zone (quiet hours)
    attributes                                 a JSON object merged into the attributes
                                               (listmonk's attributes column)
    attributes.<path>                          one attribute (`plan.tier` -> {"plan": {"tier"}})
    ignore                                     not imported
A header that matches nothing maps to `attributes.<header as snake_case>`; every mapping can be
changed before the import starts.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.addresses import normalize_address
from shared.domain.errors import InvalidInput

DELIMITERS = (",", ";", "\t")
ATTRIBUTE_PREFIX = "attributes."
ATTRIBUTE_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
IGNORE = "ignore"
MEMBERSHIPS = ("lists", "tags", "topics")
FIELDS = ("email", "first_name", *MEMBERSHIPS, "status", "unsubscribed_at", "cleaned_at",
          "timezone", "attributes", IGNORE)  # fmt: skip
SINGLE_USE = frozenset(f for f in FIELDS if f != IGNORE)  # at most one column each
NAME = re.compile(r"^[\w .:&/+-]{1,64}$")
MAX_VALUE = 1000
MAX_JSON = 10_000
_MULTI = re.compile(r"[,;|]")
_INTEGER = re.compile(r"^-?(0|[1-9][0-9]{0,15})$")
_DECIMAL = re.compile(r"^-?(0|[1-9][0-9]{0,15})\.[0-9]{1,10}$")
_TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")

# Header (lowercase, runs of anything but letters and digits as "_") -> field.
SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("email", "e_mail", "email_address", "emailaddress", "mail", "email_addr",
                     "e_mail_address", "address_email"), "email"),
    **dict.fromkeys(("first_name", "firstname", "first", "given_name", "fname", "name",
                     "full_name", "vorname", "prenom"), "first_name"),
    **dict.fromkeys(("lists", "list", "groups", "group", "audiences"), "lists"),
    **dict.fromkeys(("tags", "tag", "labels", "label"), "tags"),
    **dict.fromkeys(("topics", "topic", "interests", "interest"), "topics"),
    **dict.fromkeys(("status", "subscription_status", "email_marketing_status",
                     "member_status", "subscriber_status", "email_status"), "status"),
    **dict.fromkeys(("unsub_time", "unsubscribed_at", "unsubscribe_time", "unsubscribed_on",
                     "unsubscribe_date"), "unsubscribed_at"),
    **dict.fromkeys(("clean_time", "cleaned_at", "bounced_at", "cleaned_on"), "cleaned_at"),
    **dict.fromkeys(("timezone", "time_zone", "tz"), "timezone"),
    **dict.fromkeys(("attributes", "attribs", "custom_fields", "attributes_json"), "attributes"),
    # Bookkeeping columns of other tools' exports (Mailchimp, listmonk): not imported.
    **dict.fromkeys(("uuid", "id", "created_at", "updated_at", "leid", "euid", "member_rating",
                     "optin_time", "optin_ip", "confirm_time", "confirm_ip", "latitude",
                     "longitude", "gmtoff", "dstoff", "cc", "region", "last_changed", "notes",
                     "unsub_campaign_title", "unsub_campaign_id", "unsub_reason",
                     "unsub_reason_other", "clean_campaign_title", "clean_campaign_id"), IGNORE),
}  # fmt: skip

# The source's status -> ours. Nothing unsubscribed, cleaned or blocked becomes confirmed.
SUBSCRIBED, PENDING, UNSUBSCRIBED, SUPPRESSED = (
    "subscribed",
    "pending",
    "unsubscribed",
    "suppressed",
)
STATUSES: dict[str, tuple[str, str]] = {  # value -> (status, suppression reason)
    **dict.fromkeys(("", "subscribed", "subscriber", "confirmed", "active", "enabled",
                     "opted_in", "opt_in", "optin", "yes", "true"), (SUBSCRIBED, "")),
    **dict.fromkeys(("pending", "unconfirmed", "non_subscribed", "nonsubscribed",
                     "transactional", "double_opt_in"), (PENDING, "")),
    **dict.fromkeys(("unsubscribed", "unsubscribe", "opted_out", "opt_out", "optout",
                     "disabled", "inactive", "no", "false"), (UNSUBSCRIBED, "unsubscribed")),
    **dict.fromkeys(("cleaned", "bounced", "hard_bounce", "hard_bounced", "invalid"),
                    (SUPPRESSED, "hard_bounce")),
    **dict.fromkeys(("complained", "complaint", "spam", "abuse"), (SUPPRESSED, "complaint")),
    **dict.fromkeys(("blocklisted", "blacklisted", "blocked", "suppressed", "banned"),
                    (SUPPRESSED, "manual")),
}  # fmt: skip


@dataclass(frozen=True)
class ImportRow:
    email: str
    first_name: str
    memberships: dict[str, list[str]]
    attributes: dict[str, Any]
    status: str = SUBSCRIBED  # subscribed | pending | unsubscribed | suppressed
    suppression_reason: str = ""
    timezone: str | None = None


def header_key(header: str) -> str:
    """`"Email Address"` -> `email_address`: lowercase, runs of other characters as `_`."""
    return re.sub(r"[^0-9a-z]+", "_", header.strip().lstrip("\ufeff").lower()).strip("_")


def sniff_delimiter(header_line: str) -> str:
    """The delimiter of a header line: the candidate that occurs most outside quotes."""
    outside = re.sub(r'"[^"]*"', "", header_line)
    counts = {d: outside.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def default_target(header: str) -> str:
    raw = header.strip().lstrip("\ufeff")
    if raw.lower().startswith(ATTRIBUTE_PREFIX):
        path = raw[len(ATTRIBUTE_PREFIX) :]
        return ATTRIBUTE_PREFIX + path if ATTRIBUTE_PATH.match(path) else IGNORE
    key = header_key(raw)
    if key in SYNONYMS:
        return SYNONYMS[key]
    return ATTRIBUTE_PREFIX + key if key else IGNORE


def default_mapping(headers: Sequence[str]) -> dict[str, str]:
    """Each header's field; a second column matching a field already taken is ignored."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for header in headers:
        target = default_target(header)
        if target in taken and target != IGNORE:
            target = IGNORE
        taken.add(target)
        mapping[header] = target
    return mapping


def check_mapping(headers: Sequence[str], mapping: Mapping[str, str]) -> list[str]:
    """The field of each column, in column order; InvalidInput naming what is wrong."""
    if not headers or not any(h.strip() for h in headers):
        raise InvalidInput("the file is empty: it needs a header row with an email column",
                           field="header")  # fmt: skip
    duplicates = sorted({h for h in headers if headers.count(h) > 1 and h.strip()})
    if duplicates:
        raise InvalidInput(f"column(s) {', '.join(duplicates)} appear twice", field="header")
    unknown = [h for h in mapping if h not in headers]
    if unknown:
        raise InvalidInput(f"the mapping names column(s) the file does not have: {unknown}",
                           field="mapping")  # fmt: skip
    targets = [mapping.get(h, default_target(h)) for h in headers]
    for header, target in zip(headers, targets, strict=True):
        _check_target(header, target)
    used = [t for t in targets if t in SINGLE_USE or t.startswith(ATTRIBUTE_PREFIX)]
    twice = sorted({t for t in used if used.count(t) > 1})
    if twice:
        raise InvalidInput(f"more than one column is mapped to {', '.join(twice)}",
                           field="mapping")  # fmt: skip
    if "email" not in targets:
        raise InvalidInput("no column holds the email address (e.g. a column named email)",
                           field="header")  # fmt: skip
    return targets


def _check_target(header: str, target: str) -> None:
    if target in FIELDS:
        return
    if target.startswith(ATTRIBUTE_PREFIX) and ATTRIBUTE_PATH.match(
        target[len(ATTRIBUTE_PREFIX) :]
    ):
        return
    raise InvalidInput(
        f"column {header!r} is mapped to {target!r}; use one of {', '.join(FIELDS)} or "
        "attributes.<name>",
        field="mapping",
    )


def parse_cells(
    targets: Sequence[str], cells: Sequence[str], clean_name: Callable[[str], str] = str.strip
) -> ImportRow:
    """One row (cells in column order) as an ImportRow; InvalidInput saying what is wrong.
    `clean_name` checks the first name (the signup service's rule)."""
    if len(cells) > len(targets) and any(c.strip() for c in cells[len(targets) :]):
        raise InvalidInput("the row has more fields than the header")
    values: dict[str, str] = {}
    attributes: dict[str, Any] = {}
    for target, cell in zip(targets, cells, strict=False):
        value = cell.strip()
        if target == IGNORE or not value:
            continue
        if target.startswith(ATTRIBUTE_PREFIX):
            if len(value) > MAX_VALUE:
                raise InvalidInput(f"{target} is longer than {MAX_VALUE} characters")
            _set_path(attributes, target[len(ATTRIBUTE_PREFIX) :].split("."), _typed(value))
        elif target == "attributes":
            attributes = _deep_merge(_json_object(value), attributes)
        else:
            values[target] = value
    status, reason = _status(values)
    return ImportRow(
        email=normalize_address(values.get("email", "")),
        first_name=clean_name(values.get("first_name", "")),
        memberships={
            m: names for m in MEMBERSHIPS if m in values and (names := split_names(values[m], m))
        },
        attributes=attributes,
        status=status,
        suppression_reason=reason,
        timezone=_timezone(values.get("timezone", "")),
    )


def split_names(cell: str, column: str) -> list[str]:
    """`"newsletter,offers"`, `a;b`, `a|b`, Mailchimp's `"VIP","Customer"` -> names."""
    names = _split_names(cell, column)
    if isinstance(names, str):
        raise InvalidInput(names)
    return list(names)


@functools.lru_cache(maxsize=4096)
def _split_names(cell: str, column: str) -> tuple[str, ...] | str:
    """The names, or why not (cached: a file repeats the same few cells a million times)."""
    names = [n.strip().strip('"').strip() for n in _MULTI.split(cell)]
    for name in (n for n in names if n):
        if not NAME.match(name):
            return f"{column} has an invalid name {name[:40]!r}"
    return tuple(dict.fromkeys(n for n in names if n))


@functools.lru_cache(maxsize=1024)
def _status_of(raw: str) -> tuple[str, str] | None:
    return STATUSES.get(header_key(raw))


def _status(values: dict[str, str]) -> tuple[str, str]:
    raw = values.get("status", "")
    found = _status_of(raw)
    if found is None:
        known = "subscribed, pending, unsubscribed, cleaned, blocklisted"
        raise InvalidInput(f"unknown status {raw[:40]!r} (e.g. {known})")
    if found[0] != SUPPRESSED and values.get("cleaned_at"):
        return SUPPRESSED, "hard_bounce"
    if found[0] in (SUBSCRIBED, PENDING) and values.get("unsubscribed_at"):
        return UNSUBSCRIBED, "unsubscribed"
    return found


def _json_object(value: str) -> dict[str, Any]:
    if len(value) > MAX_JSON:
        raise InvalidInput(f"attributes is longer than {MAX_JSON} characters")
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise InvalidInput(f"attributes is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput("attributes must be a JSON object ({...})")
    return parsed


def _timezone(value: str) -> str | None:
    if not value:
        return None
    if len(value) > 64 or not _TIMEZONE.match(value):
        raise InvalidInput(f"timezone {value[:40]!r} is not a time zone name like Europe/Oslo")
    return value


def _typed(value: str) -> Any:
    """Plain numbers become numbers; "007" or "1e3" stay text (zip codes, codes)."""
    if _INTEGER.match(value):
        return int(value)
    if _DECIMAL.match(value):
        return float(value)
    return value


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        nested = target.get(part)
        if not isinstance(nested, dict):
            nested = target[part] = {}
        target = nested
    target[path[-1]] = value


def deep_merge(current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new` over `current`, nested objects merged key by key."""
    return _deep_merge(current, new)


def _deep_merge(current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
