"""Import jobs: one document per import file, the state its chunks move forward.

    uploaded -> scanning -> running -> done
                   \\-> refused (a malformed file: nothing was imported)

Several chunks run at once (a window of `parallel` chunks in flight). `finished_chunks`
lists the chunks finished (`done_chunks` counts them) and `next_chunk` is the first chunk not
yet published; a chunk is finished in the same atomic change that adds its counts and claims
the next chunk to publish, so a redelivered chunk is recognised and an interrupted import
carries on with the chunks not yet finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.domain.errors import NotFound
from shared.ports import DocumentStore

COLLECTION = "imports"
UPLOADED, SCANNING, RUNNING, DONE, REFUSED = "uploaded", "scanning", "running", "done", "refused"
FINISHED = frozenset({DONE, REFUSED})


@dataclass
class ImportJob:
    id: str
    filename: str
    blob: str
    size: int
    file_hash: str
    created_at: float
    status: str = UPLOADED
    confirmed_consent: bool = False
    delimiter: str = ","
    headers: list[str] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)
    rows_total: int = 0
    chunks: list[list[int]] = field(default_factory=list)  # [byte offset, line before] each
    done_chunks: int = 0
    finished_chunks: list[int] = field(default_factory=list)
    next_chunk: int = 0  # the first chunk not yet published
    counts: dict[str, int] = field(default_factory=dict)
    duplicate_lines: list[list[int]] = field(default_factory=list)  # [line, first line], a few
    reject_parts: list[int] = field(default_factory=list)  # chunks that rejected rows
    rejects_blob: str = ""
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ImportJob:
        job = cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})
        if "finished_chunks" not in doc:  # stored by the version that ran chunks in order
            job.finished_chunks = list(range(job.done_chunks))
            job.next_chunk = job.done_chunks
        return job

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def rows_done(self) -> int:
        return int(self.counts.get("rows", 0))

    def unfinished_chunks(self) -> list[int]:
        """The chunks published and not finished: in flight, or lost with a crash."""
        finished = set(self.finished_chunks)
        return [i for i in range(self.next_chunk) if i not in finished]

    def chunk_range(self, index: int) -> tuple[int, int, int]:
        """(first byte, byte after the last, the line before its first row) of a chunk."""
        start, line = self.chunks[index]
        end = self.chunks[index + 1][0] if index + 1 < len(self.chunks) else self.size
        return start, end, line


class Imports:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def create(self, job: ImportJob) -> None:
        self._store.create(COLLECTION, job.id, job.to_doc())

    def get(self, import_id: str) -> ImportJob:
        doc = self._store.get(COLLECTION, import_id)
        if doc is None:
            raise NotFound(f"no import {import_id!r}")
        return ImportJob.from_doc(doc)

    def change(self, import_id: str, mutate: Callable[[ImportJob], bool]) -> ImportJob:
        """Atomically apply `mutate` (False: write nothing); the job as stored afterwards."""

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is None:
                raise NotFound(f"no import {import_id!r}")
            job = ImportJob.from_doc(doc)
            return job.to_doc() if mutate(job) else None

        return ImportJob.from_doc(self._store.update(COLLECTION, import_id, apply) or {})

    def recent(self, limit: int = 50) -> list[ImportJob]:
        """The newest imports first (ids start with their UTC creation time)."""
        jobs: list[ImportJob] = []
        start: str | None = None
        while True:
            page = self._store.query(COLLECTION, limit=500, start_after=start)
            jobs.extend(ImportJob.from_doc(doc) for _, doc in page)
            if len(page) < 500:
                break
            start = page[-1][0]
        return sorted(jobs, key=lambda j: j.id, reverse=True)[:limit]
