"""Import subscribers from CSV: every row validated, consent recorded, safe to run again.

Columns (header row required, any order): `email` (required), `first_name`, `lists`, `tags`,
`topics` (several names separated by `;` or `|`), and `attributes.<path>` for anything to
segment on (`attributes.plan.tier` becomes {"plan": {"tier": ...}}; a number written plainly,
like 42 or 3.5, is stored as a number, anything else as text). Unknown columns are refused
before any row is read.

Consent: every new subscriber gets a consent record (action and source "import", the file name,
the SHA-256 of the file). With `confirmed_consent` (the sender vouches for prior opt-in) they
are created confirmed; without it they are created pending and receive the double opt-in mail,
published as a `signed_up` event exactly like a signup. That event's id is derived from the
subscriber and the file hash, so re-running the same file re-publishes the same event and the
send ledger mails the confirmation once.

Re-running is harmless: ids are keyed hashes of the address (create-if-absent), an existing
subscriber only has its profile merged (name, lists, tags, topics, attributes), and an import
never re-subscribes anyone who unsubscribed or is suppressed. An address on the suppression
list that is not yet a subscriber is rejected with the reason.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from shared import topology
from shared.domain.addresses import normalize_address
from shared.domain.errors import AlreadyExists, InvalidInput
from shared.domain.events import stable_id
from shared.domain.messages import SIGNED_UP, SubscriberEvent
from shared.domain.subscriber import CONFIRMED, PENDING, ConsentRecord, Subscriber
from shared.repositories.subscribers import Subscribers
from shared.repositories.suppressions import Suppressions
from shared.services.publishing import Outbox
from shared.services.signup import clean_name

MEMBERSHIP_COLUMNS = ("lists", "tags", "topics")
KNOWN_COLUMNS = ("email", "first_name", *MEMBERSHIP_COLUMNS)
ATTRIBUTE_PREFIX = "attributes."
ATTRIBUTE_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
NAME = re.compile(r"^[\w .:-]{1,64}$")
MAX_VALUE = 1000
EVENT_BATCH = 200
_EXTRA = "\x00extra"  # where csv puts the cells of a row longer than the header
_SEPARATORS = re.compile(r"[;|]")
_INTEGER = re.compile(r"^-?(0|[1-9][0-9]{0,15})$")
_DECIMAL = re.compile(r"^-?(0|[1-9][0-9]{0,15})\.[0-9]{1,10}$")


@dataclass(frozen=True)
class ImportOptions:
    source_name: str  # the file name, kept in the consent record
    file_hash: str  # SHA-256 of the whole file, kept in the consent record
    confirmed_consent: bool = False


@dataclass(frozen=True)
class RejectedRow:
    line: int
    row: dict[str, str]
    reason: str


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    confirmations_requested: int = 0
    rejects: list[RejectedRow] = field(default_factory=list)  # the first few, for API answers

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["rejects"] = [asdict(r) for r in self.rejects]
        return doc


@dataclass(frozen=True)
class ImportRow:
    email: str
    first_name: str
    memberships: dict[str, list[str]]
    attributes: dict[str, Any]


class SubscriberImport:
    def __init__(
        self,
        subscribers: Subscribers,
        suppressions: Suppressions,
        outbox: Outbox,
        clock: Callable[[], float],
        keep_rejects: int = 100,
    ) -> None:
        self._subscribers = subscribers
        self._suppressions = suppressions
        self._outbox = outbox
        self._clock = clock
        self._keep_rejects = keep_rejects

    def run(
        self,
        lines: Iterable[str],
        options: ImportOptions,
        on_row: Callable[[int], None] = lambda n: None,
        on_reject: Callable[[RejectedRow], None] = lambda r: None,
    ) -> ImportSummary:
        """Import every row. InvalidInput, before any write, when the header is wrong; if the
        file turns out to be broken CSV halfway, the rows before stay imported (run it again
        once fixed: re-running is harmless)."""
        reader = csv.DictReader(lines, restkey=_EXTRA)
        summary = ImportSummary()
        events: list[SubscriberEvent] = []
        try:
            originals = list(reader.fieldnames or [])
            columns = check_header(originals)
            for row in reader:
                summary.rows += 1
                values = {c: (row.get(o) or "") for c, o in zip(columns, originals, strict=True)}
                self._row(row, values, reader.line_num, options, summary, events, on_reject)
                if len(events) >= EVENT_BATCH:
                    self._publish(events)
                on_row(summary.rows)
        except csv.Error as exc:
            raise InvalidInput(f"not valid CSV at line {reader.line_num}: {exc}") from exc
        finally:
            self._publish(events)
        return summary

    def _row(
        self,
        row: dict[str, Any],
        values: dict[str, str],
        line: int,
        options: ImportOptions,
        summary: ImportSummary,
        events: list[SubscriberEvent],
        on_reject: Callable[[RejectedRow], None],
    ) -> None:
        try:
            if row.get(_EXTRA):
                raise InvalidInput("the row has more fields than the header")
            self._import(parse_row(values), options, summary, events)
        except InvalidInput as exc:
            self._reject(summary, RejectedRow(line, values, str(exc)), on_reject)

    def _reject(
        self, summary: ImportSummary, rejected: RejectedRow, on_reject: Callable[..., None]
    ) -> None:
        summary.rejected += 1
        if len(summary.rejects) < self._keep_rejects:
            summary.rejects.append(rejected)
        on_reject(rejected)

    def _import(
        self,
        row: ImportRow,
        options: ImportOptions,
        summary: ImportSummary,
        events: list[SubscriberEvent],
    ) -> None:
        now = self._clock()
        subscriber_id = self._subscribers.id_for(row.email)
        consent = ConsentRecord("import", now, "import", form_version=options.source_name,
                                text_hash=options.file_hash)  # fmt: skip
        created = self._create(subscriber_id, row, options, consent, now)
        if created is not None:
            summary.created += 1
            subscriber = created
        else:
            subscriber, changed = self._merge(subscriber_id, row, options, consent, now)
            summary.updated += changed
            summary.unchanged += not changed
        if subscriber.status == PENDING and _imported_from(subscriber, options.file_hash):
            events.append(self._signed_up(subscriber, options, now))
            summary.confirmations_requested += 1

    def _create(
        self,
        subscriber_id: str,
        row: ImportRow,
        options: ImportOptions,
        consent: ConsentRecord,
        now: float,
    ) -> Subscriber | None:
        """The new subscriber, or None when the address is already known."""
        if self._subscribers.find(subscriber_id) is not None:
            return None
        reason = self._suppressions.reason(row.email)
        if reason:
            raise InvalidInput(f"address is suppressed ({reason}); it cannot be imported")
        confirmed = options.confirmed_consent
        subscriber = Subscriber(
            id=subscriber_id,
            email=row.email,
            status=CONFIRMED if confirmed else PENDING,
            first_name=row.first_name,
            attributes=row.attributes,
            created_at=now,
            confirmed_at=now if confirmed else None,
            consent=[asdict(consent)],
            lists=row.memberships.get("lists", []),
            tags=row.memberships.get("tags", []),
            topics=row.memberships.get("topics", []),
        )
        try:
            self._subscribers.create(subscriber)
        except AlreadyExists:
            return None  # created meanwhile (the same address twice in one file, a signup)
        return subscriber

    def _merge(
        self,
        subscriber_id: str,
        row: ImportRow,
        options: ImportOptions,
        consent: ConsentRecord,
        now: float,
    ) -> tuple[Subscriber, bool]:
        def merge(existing: Subscriber) -> bool:
            before = existing.to_doc()
            existing.first_name = row.first_name or existing.first_name
            for name, values in row.memberships.items():
                current = getattr(existing, name)
                setattr(existing, name, current + [v for v in values if v not in current])
            existing.attributes = _deep_merge(existing.attributes, row.attributes)
            if options.confirmed_consent and existing.status == PENDING and not existing.suppressed:
                existing.confirm(now, consent)  # never re-subscribes the unsubscribed
            return existing.to_doc() != before

        changed: list[bool] = []

        def tracked(existing: Subscriber) -> bool:
            changed[:] = [merge(existing)]
            return changed[0]

        subscriber = self._subscribers.change(subscriber_id, tracked)
        return subscriber, bool(changed and changed[0])

    def _signed_up(
        self, subscriber: Subscriber, options: ImportOptions, now: float
    ) -> SubscriberEvent:
        event_id = stable_id("import-signed-up", subscriber.id, options.file_hash)
        return SubscriberEvent(event_id, SIGNED_UP, subscriber.id, now, {"source": "import"})

    def _publish(self, events: list[SubscriberEvent]) -> None:
        if events:
            self._outbox.publish_json(topology.SUBSCRIBER_EVENTS, [asdict(e) for e in events])
            events.clear()


def check_header(fieldnames: list[str]) -> list[str]:
    """The header's columns, cleaned; InvalidInput naming unknown or missing columns."""
    if not fieldnames:
        raise InvalidInput("the CSV file is empty: it needs a header row with an email column")
    columns = [str(c or "").strip().lstrip("\ufeff").strip() for c in fieldnames]
    unknown = [
        c for c in columns
        if c not in KNOWN_COLUMNS
        and not (c.startswith(ATTRIBUTE_PREFIX) and ATTRIBUTE_PATH.match(c[len(ATTRIBUTE_PREFIX):]))
    ]  # fmt: skip
    if unknown:
        raise InvalidInput(
            f"unknown column(s) {', '.join(repr(c) for c in unknown)}; use email, first_name, "
            "lists, tags, topics and attributes.<name>",
            field="header",
        )
    if "email" not in columns:
        raise InvalidInput("the header has no email column", field="header")
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise InvalidInput(f"column(s) {', '.join(duplicates)} appear twice", field="header")
    return columns


def parse_row(values: dict[str, str]) -> ImportRow:
    """One validated row (cells keyed by column); InvalidInput saying what is wrong."""
    values = {c: v.strip() for c, v in values.items()}
    memberships = {c: _names(values.get(c, ""), c) for c in MEMBERSHIP_COLUMNS}
    attributes: dict[str, Any] = {}
    for column, value in values.items():
        if column.startswith(ATTRIBUTE_PREFIX) and value:
            if len(value) > MAX_VALUE:
                raise InvalidInput(f"{column} is longer than {MAX_VALUE} characters")
            _set_path(attributes, column[len(ATTRIBUTE_PREFIX) :].split("."), _typed(value))
    return ImportRow(
        email=normalize_address(values.get("email", "")),
        first_name=clean_name(values.get("first_name", "")),
        memberships={k: v for k, v in memberships.items() if v},
        attributes=attributes,
    )


def _names(cell: str, column: str) -> list[str]:
    names = [n.strip() for n in _SEPARATORS.split(cell) if n.strip()]
    for name in names:
        if not NAME.match(name):
            raise InvalidInput(f"{column} has an invalid name {name[:40]!r}")
    return list(dict.fromkeys(names))


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


def _deep_merge(current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _imported_from(subscriber: Subscriber, file_hash: str) -> bool:
    """Created by an import of this very file (so its confirmation is this import's job)."""
    first = subscriber.consent[0] if subscriber.consent else {}
    return first.get("action") == "import" and first.get("text_hash") == file_hash
