"""Audience snapshots in the blob store: a campaign's audience, selected once by SQL over the
subscriber mirror (shared/services/audience_snapshot.py), as chunk files the dispatcher walks.

    audiences/<campaign id>/chunk-000001.json ...   members (Recipient fields), in id order
    audiences/<campaign id>/progress.json           a snapshot taken over several invocations:
                                                    where the next one goes on
    audiences/<campaign id>/manifest.json           written last: {chunks, members, taken_at}

A chunk's id (`000001`) is the dispatcher's cursor, as a subscriber id or a stash page id is on
the other routes. The manifest is written only after every chunk, so a snapshot without one is
unfinished and is taken again (the chunks are rewritten under the same names); with one it is
final and every phase and replay of the campaign reads the same chunks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.errors import NotFound
from shared.domain.messages import Recipient
from shared.metering import NULL_METER, OperationMeter
from shared.ports import BlobStore

PREFIX = "audiences"
ERASED = Recipient(subscriber_id="", email="")  # an erased member's place in its chunk


@dataclass(frozen=True)
class Manifest:
    campaign_id: str
    chunks: int
    members: int
    taken_at: float

    def to_doc(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "chunks": self.chunks,
                "members": self.members, "taken_at": self.taken_at}  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """An unfinished snapshot's chunks so far: `chunks` files of `members`, the last member's
    id `last_id` (the members query goes on after it), begun at `taken_at`."""

    chunks: int
    members: int
    last_id: str
    taken_at: float

    def to_doc(self) -> dict[str, Any]:
        return {"chunks": self.chunks, "members": self.members, "last_id": self.last_id,
                "taken_at": self.taken_at}  # fmt: skip


@dataclass(frozen=True)
class SnapshotChunk:
    """One chunk read back: a page for the dispatcher."""

    id: str
    number: int
    members: list[Recipient]


def chunk_id(number: int) -> str:
    return f"{number:06d}"


class AudienceSnapshots:
    def __init__(self, blobs: Callable[[], BlobStore], meter: OperationMeter = NULL_METER) -> None:
        self._open = blobs  # the store, made when first used (the bucket must be configured)
        self._meter = meter  # Cloud Storage operations: writes are class A, reads class B

    @property
    def _blobs(self) -> BlobStore:
        return self._open()

    def _name(self, campaign_id: str, leaf: str) -> str:
        return f"{PREFIX}/{campaign_id}/{leaf}"

    def manifest(self, campaign_id: str) -> Manifest | None:
        """The finished snapshot's manifest, or None when there is none (yet)."""
        doc = self._read_doc(campaign_id, "manifest.json")
        if doc is None:
            return None
        return Manifest(doc["campaign_id"], int(doc["chunks"]), int(doc["members"]),
                        float(doc["taken_at"]))  # fmt: skip

    def progress(self, campaign_id: str) -> Progress | None:
        """Where an unfinished snapshot goes on, or None when it starts from the beginning."""
        doc = self._read_doc(campaign_id, "progress.json")
        if doc is None:
            return None
        return Progress(int(doc["chunks"]), int(doc["members"]), str(doc["last_id"]),
                        float(doc["taken_at"]))  # fmt: skip

    def _read_doc(self, campaign_id: str, leaf: str) -> dict[str, Any] | None:
        self._meter.count("storage.class_b")
        try:
            return dict(json.loads(self._blobs.read(self._name(campaign_id, leaf))))
        except NotFound:
            return None

    def save_progress(self, campaign_id: str, progress: Progress) -> None:
        self._meter.count("storage.class_a")
        data = json.dumps(progress.to_doc()).encode()
        self._blobs.write(self._name(campaign_id, "progress.json"), data)

    def put_chunk(self, campaign_id: str, number: int, members: Sequence[Recipient]) -> None:
        data = json.dumps([m.to_doc() for m in members], separators=(",", ":")).encode()
        self._meter.count("storage.class_a")
        self._blobs.write(self._name(campaign_id, f"chunk-{chunk_id(number)}.json"), data)

    def finish(self, manifest: Manifest) -> None:
        data = json.dumps(manifest.to_doc()).encode()
        self._meter.count("storage.class_a")
        self._blobs.write(self._name(manifest.campaign_id, "manifest.json"), data)

    def chunk(self, campaign_id: str, number: int) -> SnapshotChunk:
        self._meter.count("storage.class_b")
        raw = json.loads(
            self._blobs.read(self._name(campaign_id, f"chunk-{chunk_id(number)}.json"))
        )
        return SnapshotChunk(chunk_id(number), number, [Recipient(**m) for m in raw])

    def pages(self, manifest: Manifest, rows_per_page: int) -> SnapshotPages:
        return SnapshotPages(self, manifest, rows_per_page)

    def erase_subscriber(self, campaign_ids: Sequence[str], subscriber_id: str) -> int:
        """Remove the person from the snapshots of these campaigns; returns chunks rewritten."""
        rewritten = 0
        for campaign_id in campaign_ids:
            for number in range(1, self._chunks_written(campaign_id) + 1):
                found = self.chunk(campaign_id, number)
                # Blanked, not removed: positions are the dispatcher's cursors.
                kept = [ERASED if m.subscriber_id == subscriber_id else m for m in found.members]
                if kept != found.members:
                    self.put_chunk(campaign_id, number, kept)
                    rewritten += 1
        return rewritten

    def _chunks_written(self, campaign_id: str) -> int:
        """The chunks a finished snapshot has, or an unfinished one has so far."""
        manifest = self.manifest(campaign_id)
        if manifest is not None:
            return manifest.chunks
        progress = self.progress(campaign_id)
        return progress.chunks if progress is not None else 0


@dataclass(frozen=True)
class SnapshotRow:
    """One member of a snapshot, as a row of the dispatcher's walk: `id` orders the rows
    (`<chunk>:<position>`), and is the cursor."""

    id: str
    member: Recipient


def row_id(number: int, position: int) -> str:
    return f"{chunk_id(number)}:{position:06d}"


def _position(cursor: str | None) -> tuple[int, int]:
    """(chunk number, position) of the row after which a page begins."""
    if not cursor:
        return 1, -1
    number, position = cursor.split(":")
    return int(number), int(position)


class SnapshotPages:
    """A snapshot, page by page in row order: the `page(cursor, until)` contract of
    AudiencePages. A page is the next `rows_per_page` rows after the cursor, across chunk files
    if need be (a chunk file holds several pages: one Cloud Storage write per file, not per
    page; an A/B test phase, whose variants take a small share of each row, takes pages of
    several page sizes). The files of the page read last are kept, as the dispatcher reads a
    planned page again and then looks ahead."""

    def __init__(
        self, snapshots: AudienceSnapshots, manifest: Manifest, rows_per_page: int
    ) -> None:
        self._snapshots = snapshots
        self._manifest = manifest
        self.rows_per_page = max(1, rows_per_page)
        self._kept: dict[int, list[SnapshotRow]] = {}

    def page(self, cursor: str | None, until: str | None = None) -> list[SnapshotRow]:
        number, after = _position(cursor)
        for old in [n for n in self._kept if n < number]:  # pages only move forward
            del self._kept[old]
        found: list[SnapshotRow] = []
        while number <= self._manifest.chunks:
            found += [r for r in self._rows(number) if r.id > row_id(number, after)]
            if until is None and len(found) >= self.rows_per_page:
                return found[: self.rows_per_page]
            if until is not None and found and found[-1].id >= until:
                break
            number, after = number + 1, -1
        return [r for r in found if until is None or r.id <= until]

    def _rows(self, number: int) -> list[SnapshotRow]:
        rows = self._kept.get(number)
        if rows is None:
            chunk = self._snapshots.chunk(self._manifest.campaign_id, number)
            rows = [SnapshotRow(row_id(number, i), m) for i, m in enumerate(chunk.members)]
            self._kept[number] = rows
        return rows
