"""Importing another tool's export: its columns mapped to Mailpipe's (changeable), a preview of
the first rows with the rows that would be rejected and why, then the import itself.

The uploaded file lands in the blob store (imports/<sha256>.csv), so inspecting it again with
another mapping and starting it read the same bytes. The import is SubscriberImport's, the one
`mailpipe subscribers import` and the admin API run: the mapping only renames (or drops)
columns in the header, and every rule (addresses, names, suppressions, consent) stays there.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.domain.errors import InvalidInput, NotFound
from shared.ports import BlobStore
from shared.services.subscriber_import import (
    ATTRIBUTE_PATH,
    ATTRIBUTE_PREFIX,
    KNOWN_COLUMNS,
    ImportOptions,
    ImportSummary,
    SubscriberImport,
    check_header,
    parse_row,
)

PREFIX = "imports/"
IGNORE = ""
PREVIEW_ROWS = 10
UPLOAD_ID = re.compile(r"^[0-9a-f]{64}$")
# Column names other tools export, and what they are here.
ALIASES = {
    "email": "email", "e-mail": "email", "emailaddress": "email", "mail": "email",
    "subscriberemail": "email", "firstname": "first_name", "fname": "first_name",
    "givenname": "first_name", "name": "first_name", "lists": "lists", "list": "lists",
    "groups": "lists", "audience": "lists", "tags": "tags", "tag": "tags", "labels": "tags",
    "topics": "topics", "interests": "topics",
}  # fmt: skip


@dataclass(frozen=True)
class Inspection:
    upload_id: str
    filename: str
    columns: list[str]  # as the file names them
    mapping: dict[str, str]  # file column -> Mailpipe column ("" = not imported)
    rows: int
    preview: list[dict[str, str]] = field(default_factory=list)  # mapped, first rows
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) among them
    error: str | None = None  # the mapped header's problem, if any


def suggest(column: str) -> str:
    """Mailpipe's column for another tool's: a known name or alias, else an attribute."""
    key = re.sub(r"[^a-z0-9]", "", column.lower())
    if key in ALIASES:
        return ALIASES[key]
    if column.startswith(ATTRIBUTE_PREFIX) or column in KNOWN_COLUMNS:
        return column
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", column.strip()).strip("_")
    return f"{ATTRIBUTE_PREFIX}{slug}" if slug else IGNORE


class ImportMapping:
    def __init__(self, blobs: BlobStore, importer: SubscriberImport) -> None:
        self._blobs = blobs
        self._importer = importer

    def upload(self, filename: str, data: bytes) -> str:
        """Store the file; its id is its SHA-256. InvalidInput when it is not UTF-8 text."""
        try:
            data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"the file is not UTF-8 ({exc.reason} at byte {exc.start})",
                               field="file") from exc  # fmt: skip
        upload_id = hashlib.sha256(data).hexdigest()
        self._blobs.write(f"{PREFIX}{upload_id}.csv", data)
        self._blobs.write(f"{PREFIX}{upload_id}.name", filename.encode()[:200])
        return upload_id

    def inspect(self, upload_id: str, mapping: Mapping[str, str] | None = None) -> Inspection:
        text, filename = self._read(upload_id)
        reader = csv.reader(io.StringIO(text, newline=""))
        columns = [c.strip() for c in next(reader, [])]
        chosen = {c: suggest(c) if mapping is None else mapping.get(c, IGNORE) for c in columns}
        rows = 0
        preview: list[dict[str, str]] = []
        rejects: list[tuple[int, str]] = []
        error = _header_error(chosen)
        for cells in reader:
            rows += 1
            if rows > PREVIEW_ROWS:
                continue  # counted, not previewed
            mapped = {chosen[c]: v for c, v in zip(columns, cells, strict=False) if chosen[c]}
            preview.append(mapped)
            if error is None:
                try:
                    parse_row(mapped)
                except InvalidInput as exc:
                    rejects.append((rows + 1, str(exc)))
        return Inspection(upload_id, filename, columns, chosen, rows, preview, rejects, error)

    def run(
        self,
        upload_id: str,
        mapping: Mapping[str, str],
        confirmed_consent: bool,
        on_row: Callable[[int], None] = lambda n: None,
    ) -> ImportSummary:
        """Import with the mapped header; InvalidInput (before any write) for a bad mapping."""
        inspection = self.inspect(upload_id, mapping)
        if inspection.error:
            raise InvalidInput(inspection.error, field="mapping")
        text, filename = self._read(upload_id)
        options = ImportOptions(filename, upload_id, confirmed_consent)
        return self._importer.run(_remapped(text, inspection), options, on_row=on_row)

    def _read(self, upload_id: str) -> tuple[str, str]:
        if not UPLOAD_ID.match(upload_id):
            raise NotFound(f"no upload {upload_id!r}")
        data = self._blobs.read(f"{PREFIX}{upload_id}.csv")  # NotFound
        try:
            name = self._blobs.read(f"{PREFIX}{upload_id}.name").decode()
        except NotFound:
            name = "upload.csv"
        return data.decode("utf-8-sig"), name


def _header_error(mapping: Mapping[str, str]) -> str | None:
    targets = [t for t in mapping.values() if t]
    bad = [t for t in targets if not _known(t)]
    if bad:
        return f"{', '.join(repr(b) for b in bad)} is not a Mailpipe column"
    try:
        check_header(targets)
    except InvalidInput as exc:
        return str(exc)
    return None


def _known(column: str) -> bool:
    if column in KNOWN_COLUMNS:
        return True
    path = column.removeprefix(ATTRIBUTE_PREFIX)
    return column.startswith(ATTRIBUTE_PREFIX) and bool(ATTRIBUTE_PATH.match(path))


def _remapped(text: str, inspection: Inspection) -> io.StringIO:
    """The file with the mapped header and the ignored columns left out."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    keep = [i for i, c in enumerate(inspection.columns) if inspection.mapping[c]]
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow([inspection.mapping[inspection.columns[i]] for i in keep])
    for cells in reader:
        writer.writerow([cells[i] if i < len(cells) else "" for i in keep])
    out.seek(0)
    return out
