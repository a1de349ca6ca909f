"""Import subscribers from rows of a file: every row validated, consent recorded, batched
writes, safe to run again.

The file's shape (delimiter, headers and their synonyms, statuses, Mailchimp and listmonk
exports) is in shared/domain/import_format.py; large files go through the import pipeline
(shared/services/imports.py), which hands this module one chunk of rows at a time.

A batch of rows costs one read per distinct address (get_many), one suppression read per new
address, and one write per new subscriber in batched commits of at most 500 (create-if-absent,
so a signup or another chunk that created the address meanwhile is merged instead). Existing
subscribers are merged one by one in a transaction, and only when the row changes something.

Consent: every new subscriber gets a consent record (action and source "import", the file name,
the SHA-256 of the file). With `confirmed_consent` (the sender vouches for prior opt-in) they
are created confirmed; without it they are created pending and receive the double opt-in mail,
published as a `signed_up` event exactly like a signup. That event's id is derived from the
subscriber and the file hash, so re-running the same file re-publishes the same event and the
send ledger mails the confirmation once.

Status from the source: an unsubscribed row unsubscribes (a known subscriber) and puts the
address on the suppression list (reason "unsubscribed", lifted only by a new double opt-in); a
cleaned, complained or blocklisted row suppresses it for good. Neither ever becomes confirmed,
and no subscriber document is created for an address that arrives unsubscribed or suppressed
(the suppression list keeps a keyed hash only). An import never re-subscribes anyone who
unsubscribed or is suppressed; a subscribed row whose address is suppressed is rejected.

The same address twice in one batch is one subscriber: later rows' values win, memberships
and attributes are merged, and the strongest status (suppressed > unsubscribed > pending >
subscribed) is kept.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from shared import topology
from shared.domain import import_format as fmt
from shared.domain.errors import AlreadyExists, InvalidInput
from shared.domain.events import stable_id
from shared.domain.import_format import ImportRow
from shared.domain.messages import SIGNED_UP, SubscriberEvent
from shared.domain.subscriber import CONFIRMED, PENDING, UNSUBSCRIBED, ConsentRecord, Subscriber
from shared.ports import MAX_BATCH_WRITES
from shared.repositories.subscribers import Subscribers
from shared.repositories.suppressions import Suppressions
from shared.services.publishing import Outbox
from shared.services.signup import clean_name

EVENT_BATCH = 200
ROWS_PER_BATCH = 500
_STRENGTH = {fmt.SUBSCRIBED: 0, fmt.PENDING: 1, fmt.UNSUBSCRIBED: 2, fmt.SUPPRESSED: 3}


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
    unsubscribed: int = 0  # rows whose source status was unsubscribed
    suppressed: int = 0  # rows whose source status was cleaned / complained / blocklisted
    duplicates: int = 0  # rows whose address an earlier row of the file already had
    confirmations_requested: int = 0
    rejects: list[RejectedRow] = field(default_factory=list)  # the first few, for API answers

    COUNTS = ("rows", "created", "updated", "unchanged", "rejected", "unsubscribed", "suppressed",
              "duplicates", "confirmations_requested")  # fmt: skip

    def add(self, other: ImportSummary, keep_rejects: int = 100) -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejects.extend(other.rejects[: max(0, keep_rejects - len(self.rejects))])

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.COUNTS}

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.counts()
        doc["rejects"] = [asdict(r) for r in self.rejects]
        return doc


@dataclass
class _Pending:
    """One address of a batch: its rows folded into one."""

    line: int
    row: ImportRow
    cells: dict[str, str]


def parse_line(targets: Sequence[str], headers: Sequence[str], cells: Sequence[str]) -> ImportRow:
    """One row's cells as an ImportRow, with signup's rule for names; InvalidInput otherwise."""
    return fmt.parse_cells(targets, cells, clean_name)


def cells_by_header(headers: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    return {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(headers)}


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

    # -- a whole (small) file in one call: the synchronous path --------------------------------
    def run(
        self,
        lines: Iterable[str],
        options: ImportOptions,
        on_row: Callable[[int], None] = lambda n: None,
        on_reject: Callable[[RejectedRow], None] = lambda r: None,
        mapping: dict[str, str] | None = None,
    ) -> ImportSummary:
        """Import every row. InvalidInput, before any write, when the header is wrong; if the
        file turns out to be broken CSV halfway, the rows before stay imported (run it again
        once fixed: re-running is harmless). Large files go through shared/services/imports.py,
        which checks the whole file before anything is written."""
        iterator = iter(lines)
        first = next(iterator, "")
        reader = csv.reader(
            _chain(first, iterator), delimiter=fmt.sniff_delimiter(first), strict=True
        )
        summary = ImportSummary()
        try:
            headers = next(reader, [])
            targets = fmt.check_mapping(headers, mapping or fmt.default_mapping(headers))
            batch: list[tuple[int, list[str]]] = []
            seen: set[str] = set()
            for cells in reader:
                batch.append((reader.line_num, cells))
                if len(batch) >= ROWS_PER_BATCH:
                    self._run_batch(batch, headers, targets, options, summary, seen, on_reject)
                    on_row(summary.rows)
            self._run_batch(batch, headers, targets, options, summary, seen, on_reject)
            on_row(summary.rows)
        except csv.Error as exc:
            raise InvalidInput(f"not valid CSV at line {reader.line_num}: {exc}") from exc
        return summary

    def _run_batch(
        self,
        batch: list[tuple[int, list[str]]],
        headers: Sequence[str],
        targets: Sequence[str],
        options: ImportOptions,
        summary: ImportSummary,
        seen: set[str],
        on_reject: Callable[[RejectedRow], None],
    ) -> None:
        if not batch:
            return
        result = self.import_cells(batch, headers, targets, options, seen)
        for rejected in result.rejects:
            on_reject(rejected)
        summary.add(result, self._keep_rejects)
        batch.clear()

    # -- one batch of rows: what an import chunk does ------------------------------------------
    def import_cells(
        self,
        rows: Sequence[tuple[int, Sequence[str]]],
        headers: Sequence[str],
        targets: Sequence[str],
        options: ImportOptions,
        seen: set[str] | None = None,
    ) -> ImportSummary:
        """Import rows given as (line, cells); every rejected row is in the summary's rejects.
        `seen` (subscriber ids of earlier batches of the same file) counts duplicates across
        batches; it is updated."""
        summary = ImportSummary(rows=len(rows))
        parsed: list[tuple[int, ImportRow, dict[str, str]]] = []
        for line, cells in rows:
            values = cells_by_header(headers, cells)
            try:
                parsed.append((line, parse_line(targets, headers, cells), values))
            except InvalidInput as exc:
                summary.rejected += 1
                summary.rejects.append(RejectedRow(line, values, str(exc)))
        for start in range(0, len(parsed), MAX_BATCH_WRITES):
            self._import_batch(parsed[start : start + MAX_BATCH_WRITES], options, summary,
                               seen if seen is not None else set())  # fmt: skip
        summary.rejects.sort(key=lambda r: r.line)
        return summary

    def _import_batch(
        self,
        parsed: list[tuple[int, ImportRow, dict[str, str]]],
        options: ImportOptions,
        summary: ImportSummary,
        seen: set[str],
    ) -> None:
        # Address -> keyed hash: the suppression key, and the subscriber id derived from it
        # (one HMAC per row instead of two).
        keys: dict[str, str] = {}
        folded = self._fold(parsed, summary, seen, keys)
        existing = self._subscribers.get_many(list(folded))
        new = {sid: p for sid, p in folded.items() if sid not in existing}
        opted_out = {sid: p for sid, p in new.items() if p.row.status in _OPTED_OUT}
        to_create = {sid: p for sid, p in new.items() if sid not in opted_out}
        emails = [p.row.email for p in to_create.values()]
        suppressed = self._suppressions.reasons_of(emails, keys)
        for sid, p in list(to_create.items()):
            if p.row.email in suppressed:
                reason = f"address is suppressed ({suppressed[p.row.email]}); it cannot be imported"
                summary.rejected += 1
                summary.rejects.append(RejectedRow(p.line, p.cells, reason))
                del to_create[sid]
        now = self._clock()
        events: list[SubscriberEvent] = []
        self._opt_out_new(opted_out, summary, now)
        self._create_new(to_create, options, summary, events, now)
        for sid, p in folded.items():
            if sid in existing:
                self._merge_existing(sid, p, options, summary, events, now)
        self._publish(events)

    def _fold(
        self,
        parsed: list[tuple[int, ImportRow, dict[str, str]]],
        summary: ImportSummary,
        seen: set[str],
        keys: dict[str, str],
    ) -> dict[str, _Pending]:
        folded: dict[str, _Pending] = {}
        for line, row, cells in parsed:
            key = keys[row.email] = self._suppressions.key(row.email)
            sid = self._subscribers.id_for_key(key)
            if sid in seen:
                summary.duplicates += 1
            seen.add(sid)
            if sid in folded:
                folded[sid].row = _fold_rows(folded[sid].row, row)
            else:
                folded[sid] = _Pending(line, row, cells)
        return folded

    def _opt_out_new(self, opted_out: dict[str, _Pending], summary: ImportSummary,
                     now: float) -> None:  # fmt: skip
        """Unsubscribed or suppressed rows of unknown addresses: the suppression list only."""
        for p in opted_out.values():
            self._suppressions.add(p.row.email, p.row.suppression_reason, now, source="import")
            _count_opt_out(summary, p.row)

    def _create_new(
        self,
        to_create: dict[str, _Pending],
        options: ImportOptions,
        summary: ImportSummary,
        events: list[SubscriberEvent],
        now: float,
    ) -> None:
        consent = asdict(_consent(options, now))  # one record, copied into each document
        subscribers = [
            self._new_subscriber(sid, p.row, options, now, consent) for sid, p in to_create.items()
        ]
        try:
            self._subscribers.create_many(subscribers)
        except AlreadyExists:  # created meanwhile (a signup, another chunk): one by one
            for sid, p in to_create.items():
                self._create_or_merge(sid, p, options, summary, events, now)
            return
        summary.created += len(subscribers)
        for subscriber in subscribers:
            if subscriber.status == PENDING:
                events.append(self._signed_up(subscriber, options, now))
                summary.confirmations_requested += 1

    def _create_or_merge(
        self,
        sid: str,
        p: _Pending,
        options: ImportOptions,
        summary: ImportSummary,
        events: list[SubscriberEvent],
        now: float,
    ) -> None:
        subscriber = self._new_subscriber(sid, p.row, options, now)
        try:
            self._subscribers.create(subscriber)
        except AlreadyExists:
            self._merge_existing(sid, p, options, summary, events, now)
            return
        summary.created += 1
        if subscriber.status == PENDING:
            events.append(self._signed_up(subscriber, options, now))
            summary.confirmations_requested += 1

    def _new_subscriber(
        self,
        sid: str,
        row: ImportRow,
        options: ImportOptions,
        now: float,
        consent: dict[str, Any] | None = None,
    ) -> Subscriber:
        confirmed = options.confirmed_consent and row.status == fmt.SUBSCRIBED
        return Subscriber(
            id=sid,
            email=row.email,
            status=CONFIRMED if confirmed else PENDING,
            first_name=row.first_name,
            attributes=row.attributes,
            created_at=now,
            confirmed_at=now if confirmed else None,
            consent=[dict(consent or asdict(_consent(options, now)))],
            lists=row.memberships.get("lists", []),
            tags=row.memberships.get("tags", []),
            topics=row.memberships.get("topics", []),
            timezone=row.timezone,
        )

    def _merge_existing(
        self,
        sid: str,
        p: _Pending,
        options: ImportOptions,
        summary: ImportSummary,
        events: list[SubscriberEvent],
        now: float,
    ) -> None:
        row = p.row
        changed: list[bool] = []

        def tracked(existing: Subscriber) -> bool:
            changed[:] = [_merge(existing, row, options, now)]
            return changed[0]

        subscriber = self._subscribers.change(sid, tracked)
        if row.status in _OPTED_OUT:
            self._suppressions.add(row.email, row.suppression_reason, now, source="import")
            _count_opt_out(summary, row)
        elif changed and changed[0]:
            summary.updated += 1
        else:
            summary.unchanged += 1
        if (
            subscriber.status == PENDING
            and not subscriber.suppressed
            and _imported_from(subscriber, options.file_hash)
        ):
            events.append(self._signed_up(subscriber, options, now))
            summary.confirmations_requested += 1

    def _signed_up(
        self, subscriber: Subscriber, options: ImportOptions, now: float
    ) -> SubscriberEvent:
        event_id = stable_id("import-signed-up", subscriber.id, options.file_hash)
        return SubscriberEvent(event_id, SIGNED_UP, subscriber.id, now, {"source": "import"})

    def _publish(self, events: list[SubscriberEvent]) -> None:
        for start in range(0, len(events), EVENT_BATCH):
            chunk = events[start : start + EVENT_BATCH]
            self._outbox.publish_json(topology.SUBSCRIBER_EVENTS, [asdict(e) for e in chunk])


_OPTED_OUT = frozenset({fmt.UNSUBSCRIBED, fmt.SUPPRESSED})


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest


def _consent(options: ImportOptions, now: float) -> ConsentRecord:
    return ConsentRecord("import", now, "import", form_version=options.source_name,
                         text_hash=options.file_hash)  # fmt: skip


def _fold_rows(first: ImportRow, later: ImportRow) -> ImportRow:
    memberships = {
        name: first.memberships.get(name, [])
        + [v for v in later.memberships.get(name, []) if v not in first.memberships.get(name, [])]
        for name in fmt.MEMBERSHIPS
    }
    strongest = max((first, later), key=lambda r: _STRENGTH[r.status])
    return ImportRow(
        email=first.email,
        first_name=later.first_name or first.first_name,
        memberships={k: v for k, v in memberships.items() if v},
        attributes=fmt.deep_merge(first.attributes, later.attributes),
        status=strongest.status,
        suppression_reason=strongest.suppression_reason,
        timezone=later.timezone or first.timezone,
    )


def _merge(existing: Subscriber, row: ImportRow, options: ImportOptions, now: float) -> bool:
    """Merge a row into a known subscriber; True when anything changed."""
    before = existing.to_doc()
    existing.first_name = row.first_name or existing.first_name
    for name, values in row.memberships.items():
        current = getattr(existing, name)
        setattr(existing, name, current + [v for v in values if v not in current])
    existing.attributes = fmt.deep_merge(existing.attributes, row.attributes)
    existing.timezone = row.timezone or existing.timezone
    if row.status in _OPTED_OUT:
        if existing.status != UNSUBSCRIBED:
            existing.unsubscribe(now, replace(_consent(options, now), action="unsubscribe"))
        if row.status == fmt.SUPPRESSED:
            existing.suppressed = existing.suppressed or row.suppression_reason
    elif (options.confirmed_consent and row.status == fmt.SUBSCRIBED
          and existing.status == PENDING and not existing.suppressed):  # fmt: skip
        existing.confirm(now, _consent(options, now))  # never re-subscribes the unsubscribed
    return existing.to_doc() != before


def _count_opt_out(summary: ImportSummary, row: ImportRow) -> None:
    if row.status == fmt.SUPPRESSED:
        summary.suppressed += 1
    else:
        summary.unsubscribed += 1


def _imported_from(subscriber: Subscriber, file_hash: str) -> bool:
    """Created by an import of this very file (so its confirmation is this import's job)."""
    first = subscriber.consent[0] if subscriber.consent else {}
    return first.get("action") == "import" and first.get("text_hash") == file_hash
