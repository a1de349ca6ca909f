"""Imports of any size: the file sits in the blob store, the import function works through it
one chunk at a time, each chunk a bus message.

    upload(data, filename)            -> job (status "uploaded"); the file is in the blob store
    inspect(id, mapping=None)         -> delimiter, header -> field mapping, the first rows as
                                         they would import, and the preview's rejected rows
    start(id, mapping, consent)       -> checks the header, publishes the scan step
    status(id) / recent()             -> progress: rows done of rows_total, counts, rejects
    rejects(id)                       -> the rejects CSV (line, email, reason) beside the file

The scan step reads the whole file before anything is written: a file that is not UTF-8 or not
valid CSV is refused with the line, and nothing is imported. It also records where each chunk
starts (byte offset and line) and counts addresses that occur more than once. Then the first
`parallel_chunks` chunks are published; each chunk, once imported, is marked finished in the
same atomic change that adds its counts and claims the next chunk not yet published, which it
then publishes. So a redelivered chunk changes nothing, a crash resumes with the chunks not yet
finished, and a small window of chunks in flight keeps Firestore's write rate gentle (a new
collection should ramp up slowly: the "500/50/5" rule) while several instances (locally:
processes) share the work.

Chunks in flight at once may hold the same address (the scan reports it as a duplicate): both
create-if-absent, so it is one subscriber, memberships and attributes merged; which of the two
rows is merged last (and so wins a conflicting first name or attribute) is not fixed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared import topology
from shared.domain import import_format as fmt
from shared.domain.errors import AlreadyProcessed, Conflict, InvalidInput, NotFound
from shared.ports import BlobStore
from shared.repositories.imports import (
    DONE,
    FINISHED,
    REFUSED,
    RUNNING,
    SCANNING,
    UPLOADED,
    ImportJob,
    Imports,
)
from shared.services.publishing import Outbox
from shared.services.subscriber_import import (
    ImportOptions,
    ImportSummary,
    RejectedRow,
    SubscriberImport,
    parse_line,
)

PREVIEW_ROWS = 10
PREVIEW_BYTES = 256 * 1024
READ_BLOCK = 8 * 1024 * 1024
KEEP_DUPLICATE_LINES = 20
REJECTS_HEADER = b"line,email,reason\r\n"


@dataclass(frozen=True)
class ImportStep:
    """The bus message of one step: the scan, or chunk `chunk`."""

    import_id: str
    step: str  # "scan" | "chunk"
    chunk: int = 0

    @classmethod
    def decode(cls, data: bytes) -> ImportStep:
        try:
            doc = json.loads(data)
            step = cls(str(doc["import_id"]), str(doc["step"]), int(doc.get("chunk", 0)))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"not an import step: {exc}") from exc
        if step.step not in ("scan", "chunk") or step.chunk < 0:
            raise InvalidInput(f"not an import step: {step}")
        return step


@dataclass
class Inspection:
    import_id: str
    filename: str
    delimiter: str
    headers: list[str]
    mapping: dict[str, str]
    fields: list[str]
    preview: list[dict[str, Any]] = field(default_factory=list)  # line + the mapped fields
    rejects: list[dict[str, Any]] = field(default_factory=list)  # line + reason
    error: str = ""  # what is wrong with the header or mapping, when something is

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


class ImportService:
    def __init__(
        self,
        imports: Imports,
        blobs: BlobStore,
        importer: SubscriberImport,
        outbox: Outbox,
        clock: Callable[[], float],
        chunk_rows: int = 5000,
        parallel_chunks: int = 2,
    ) -> None:
        self._imports = imports
        self._blobs = blobs
        self._importer = importer
        self._outbox = outbox
        self._clock = clock
        self._chunk_rows = chunk_rows
        self._parallel = max(1, parallel_chunks)

    # -- what the CLI, the admin API and the console call -------------------------------------
    def upload(self, data: bytes, filename: str) -> ImportJob:
        """Keep the file in the blob store as a new import (nothing imported yet)."""
        if not data.strip():
            raise InvalidInput("the file is empty: it needs a header row with an email column",
                               field="file")  # fmt: skip
        now = self._clock()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        import_id = f"{stamp}-{secrets.token_hex(4)}"
        name = _safe_name(filename)
        job = ImportJob(import_id, name, f"imports/{import_id}/source.csv", len(data),
                        hashlib.sha256(data).hexdigest(), now)  # fmt: skip
        self._blobs.write(job.blob, data)
        self._imports.create(job)
        return job

    def inspect(self, import_id: str, mapping: dict[str, str] | None = None) -> Inspection:
        """How the file would import with `mapping` (the default one when None)."""
        job = self._imports.get(import_id)
        head = self._blobs.read_range(job.blob, 0, PREVIEW_BYTES)
        text = _decode_head(head)
        delimiter = fmt.sniff_delimiter(text.split("\n", 1)[0])
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        headers = next(reader, [])
        chosen = {**fmt.default_mapping(headers), **(mapping or {})}
        found = Inspection(job.id, job.filename, delimiter, headers, chosen, list(fmt.FIELDS))
        try:
            targets = fmt.check_mapping(headers, chosen)
        except InvalidInput as exc:
            found.error = str(exc)
            return found
        for cells in reader:
            if len(found.preview) + len(found.rejects) >= PREVIEW_ROWS:
                break
            _preview_row(found, targets, headers, cells, reader.line_num)
        return found

    def start(
        self, import_id: str, mapping: dict[str, str] | None = None, confirmed_consent: bool = False
    ) -> ImportJob:
        """Check the header with `mapping` (InvalidInput before anything is written) and queue
        the scan. Conflict when the import has started already."""
        inspection = self.inspect(import_id, mapping)
        if inspection.error:
            raise InvalidInput(inspection.error, field="mapping")

        def begin(job: ImportJob) -> bool:
            if job.status != UPLOADED:
                raise Conflict(f"import {job.id} has started already ({job.status})")
            job.status = SCANNING
            job.delimiter = inspection.delimiter
            job.headers = inspection.headers
            job.mapping = inspection.mapping
            job.confirmed_consent = confirmed_consent
            job.started_at = self._clock()
            return True

        job = self._imports.change(import_id, begin)
        self._publish(ImportStep(job.id, "scan"))
        return job

    def status(self, import_id: str) -> ImportJob:
        return self._imports.get(import_id)

    def recent(self, limit: int = 50) -> list[ImportJob]:
        return self._imports.recent(limit)

    def rejects(self, import_id: str) -> bytes:
        """The rejects CSV (line, email, reason); NotFound while there is none."""
        job = self._imports.get(import_id)
        if not job.rejects_blob:
            state = "has rejected no row" if job.status == DONE else f"is {job.status}"
            raise NotFound(f"import {import_id} {state}: no rejects file")
        return self._blobs.read(job.rejects_blob)

    # -- the import function ------------------------------------------------------------------
    def handle(self, step: ImportStep) -> str:
        job = self._imports.get(step.import_id)
        if job.status in FINISHED:
            raise AlreadyProcessed(f"import {job.id} is {job.status}")
        if step.step == "scan":
            return self._scan(job)
        return self._chunk(job, step.chunk)

    def _scan(self, job: ImportJob) -> str:
        if job.status == RUNNING:  # scanned before a crash: carry on
            self._resume(job)
            return "resumed"
        try:
            found = _Scan(self._blobs, job, self._chunk_rows).run()
        except InvalidInput as exc:
            self._finish(job.id, REFUSED, error=str(exc))
            return "refused"

        def scanned(current: ImportJob) -> bool:
            if current.status != SCANNING:
                return False
            current.status = RUNNING
            current.rows_total = found.rows
            current.chunks = found.chunks
            current.counts = {**current.counts, "duplicates": found.duplicates}
            current.duplicate_lines = found.duplicate_lines
            current.next_chunk = min(self._parallel, len(found.chunks))
            return True

        after = self._imports.change(job.id, scanned)
        if after.status == RUNNING:
            self._publish_chunks(after, range(after.next_chunk))
            self._finish_when_done(after)
        return f"scanned {found.rows} rows in {len(found.chunks)} chunks"

    def _chunk(self, job: ImportJob, index: int) -> str:
        if job.status != RUNNING or index in job.finished_chunks or index >= len(job.chunks):
            if job.status == RUNNING:  # finished, maybe not followed by the next: pick up
                self._resume(job)
            raise AlreadyProcessed(f"import {job.id} chunk {index} (done: {job.done_chunks})")
        summary = self._import_chunk(job, index)
        if summary.rejects:
            self._blobs.write(_part_name(job, index), _rejects_csv(job, summary.rejects))
        claimed: list[int] = []

        def finished(current: ImportJob) -> bool:
            if index in current.finished_chunks:
                return False  # a concurrent duplicate finished it first
            current.finished_chunks.append(index)
            current.done_chunks = len(current.finished_chunks)
            for name, value in summary.counts().items():
                if name != "duplicates":  # the scan counted them across the whole file
                    current.counts[name] = current.counts.get(name, 0) + value
            if summary.rejects:
                current.reject_parts.append(index)
            if current.next_chunk < len(current.chunks):
                claimed[:] = [current.next_chunk]
                current.next_chunk += 1
            return True

        after = self._imports.change(job.id, finished)
        self._publish_chunks(after, claimed)
        self._finish_when_done(after)
        return f"chunk {index}: {summary.rows} rows"

    def _import_chunk(self, job: ImportJob, index: int) -> ImportSummary:
        start, end, line_before = job.chunk_range(index)
        text = self._blobs.read_range(job.blob, start, end).decode("utf-8")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=job.delimiter, strict=True)
        rows = [(line_before + reader.line_num, cells) for cells in reader]
        targets = fmt.check_mapping(job.headers, job.mapping)
        options = ImportOptions(job.filename, job.file_hash, job.confirmed_consent)
        summary = self._importer.import_cells(rows, job.headers, targets, options, set())
        return summary

    def _resume(self, job: ImportJob) -> None:
        """After a crash or a lost message: publish again every chunk published and not
        finished (a duplicate delivery changes nothing), fill the window, or finish."""
        claimed: list[int] = []

        def claim(current: ImportJob) -> bool:
            window = self._parallel - len(current.unfinished_chunks())
            free = min(window, len(current.chunks) - current.next_chunk)
            claimed[:] = list(range(current.next_chunk, current.next_chunk + max(0, free)))
            current.next_chunk += len(claimed)
            return bool(claimed)

        after = self._imports.change(job.id, claim)
        self._publish_chunks(after, after.unfinished_chunks())
        self._finish_when_done(after)

    def _publish_chunks(self, job: ImportJob, chunks: Iterable[int]) -> None:
        for index in chunks:
            self._publish(ImportStep(job.id, "chunk", index))

    def _finish_when_done(self, job: ImportJob) -> None:
        """Every chunk finished: the rejects file from the chunks' parts, and done."""
        if job.status != RUNNING or job.done_chunks < len(job.chunks):
            return
        rejects_blob = ""
        if job.reject_parts:
            rejects_blob = f"imports/{job.id}/rejects.csv"
            parts = [self._blobs.read(_part_name(job, i)) for i in sorted(job.reject_parts)]
            self._blobs.write(rejects_blob, REJECTS_HEADER + b"".join(parts))
        self._finish(job.id, DONE, rejects_blob=rejects_blob)

    def _finish(self, import_id: str, status: str, error: str = "", rejects_blob: str = "") -> None:
        def finish(job: ImportJob) -> bool:
            if job.status in FINISHED:
                return False
            job.status, job.error, job.rejects_blob = status, error, rejects_blob
            job.finished_at = self._clock()
            return True

        self._imports.change(import_id, finish)

    def _publish(self, step: ImportStep) -> None:
        self._outbox.publish_json(topology.SUBSCRIBER_IMPORTS, [asdict(step)])


@dataclass
class _ScanResult:
    rows: int = 0
    chunks: list[list[int]] = field(default_factory=list)
    duplicates: int = 0
    duplicate_lines: list[list[int]] = field(default_factory=list)


class _Scan:
    """One pass over the whole file: valid UTF-8 and CSV, chunk starts, duplicate addresses."""

    def __init__(self, blobs: BlobStore, job: ImportJob, chunk_rows: int) -> None:
        self._blobs = blobs
        self._job = job
        self._chunk_rows = chunk_rows
        self.offset = 0
        self.line = 0

    def run(self) -> _ScanResult:
        job = self._job
        found = _ScanResult()
        reader = csv.reader(self._lines(), delimiter=job.delimiter, strict=True)
        email = fmt.check_mapping(job.headers, job.mapping).index("email")
        first_line: dict[int, int] = {}  # address hash -> line, to report duplicates
        try:
            next(reader, None)  # the header
            while True:
                offset, line = self.offset, reader.line_num
                cells = next(reader, None)
                if cells is None:
                    return found
                if found.rows % self._chunk_rows == 0:
                    found.chunks.append([offset, line])
                found.rows += 1
                self._duplicate(found, first_line, cells[email] if email < len(cells) else "",
                                reader.line_num)  # fmt: skip
        except csv.Error as exc:
            raise InvalidInput(f"not valid CSV at line {reader.line_num + 1}: {exc}") from exc

    def _duplicate(self, found: _ScanResult, first_line: dict[int, int], cell: str,
                   line: int) -> None:  # fmt: skip
        key = cell.strip().lower()
        if not key:
            return
        digest = hash(key)  # 64 bits (SipHash): as unlikely to collide as blake2b's 8 bytes, and
        # the scan is one pass in one process; a third of the scan's time less than blake2b
        seen_at = first_line.setdefault(digest, line)
        if seen_at != line:
            found.duplicates += 1
            if len(found.duplicate_lines) < KEEP_DUPLICATE_LINES:
                found.duplicate_lines.append([line, seen_at])

    def _lines(self) -> Iterator[str]:
        for raw in _byte_lines(self._blobs, self._job.blob, self._job.size):
            try:
                text = raw.decode("utf-8-sig" if self.offset == 0 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"the file is not UTF-8 text: line {self.line + 1} ({exc.reason}); save it "
                    "as UTF-8 (CSV UTF-8) and upload it again",
                    field="file",
                ) from exc
            self.offset += len(raw)
            self.line += 1
            yield text


def _byte_lines(blobs: BlobStore, name: str, size: int) -> Iterator[bytes]:
    """The object's lines (each with its line end), read a block at a time."""
    rest = b""
    for start in range(0, size, READ_BLOCK):
        block = rest + blobs.read_range(name, start, min(size, start + READ_BLOCK))
        lines = block.split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


def _decode_head(head: bytes) -> str:
    text = head.decode("utf-8-sig", errors="replace")
    if len(head) == PREVIEW_BYTES and "\n" in text:
        text = text[: text.rindex("\n") + 1]  # no half row at the end of the preview
    return text


def _preview_row(found: Inspection, targets: list[str], headers: list[str], cells: list[str],
                 line: int) -> None:  # fmt: skip
    try:
        row = parse_line(targets, headers, cells)
    except InvalidInput as exc:
        found.rejects.append({"line": line, "reason": str(exc)})
        return
    found.preview.append({"line": line, **asdict(row)})


def _part_name(job: ImportJob, index: int) -> str:
    return f"imports/{job.id}/rejects/{index:06d}.csv"


def _rejects_csv(job: ImportJob, rejects: list[RejectedRow]) -> bytes:
    email_header = next(
        (h for h, t in zip(job.headers, fmt.check_mapping(job.headers, job.mapping), strict=True)
         if t == "email"), "")  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out)
    for rejected in rejects:
        writer.writerow([rejected.line, rejected.row.get(email_header, ""), rejected.reason])
    return out.getvalue().encode("utf-8")


def _safe_name(filename: str) -> str:
    name = (filename or "upload.csv").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in name if c.isprintable())[:200]
    return cleaned or "upload.csv"
