"""Taking a campaign's audience snapshot: the audience SQL (shared/services/audience_sql.py)
run once over the subscriber mirror as of the campaign's `audience_at`, its rows written in id
order as chunk files of `PAGES_PER_FILE` x `chunk_size` members to the blob store
(shared/repositories/audience_snapshots.py). The query's results are read page by page, so the
dispatch function never holds more than a chunk and a results page of a million-member audience.

Before it is taken, the mirror must hold everyone the documents hold as confirmed by the
audience time (one count aggregation on the documents, one count in the warehouse): an import
that just finished may still have mirror rows on their way, and a snapshot taken then would
leave those subscribers out. While it lags, `take` raises MirrorBehind and the dispatcher waits
(shared/services/dispatch.py); after `mirror_wait_s` it stops with the repair to make. In-flight
unsubscribes only make the mirror's count larger, and the send-time re-check drops them.

Every phase of the campaign walks the same snapshot: an A/B test's remainder phase picks its
cohort from it by the same hash assignment as the test phase, so nothing is stashed between the
phases. Taking it again is harmless until the manifest is written, and a no-op after.

A large audience is taken over several dispatch invocations: after `piece_s` of writing chunks
(MAILPIPE_AUDIENCE_SNAPSHOT_PIECE_S) one saves its progress (the chunks so far and the last
member's id) and raises SnapshotUnfinished; the dispatcher hands over, and the next
invocation's query goes on after that id. So no invocation outlasts the dispatch lease or the
function's timeout, whatever the list's size (10 M members take ~1,140 s of dispatch's 0.167
vCPU: ten pieces).

Both steps are metered as stages of their own (`stage.mirror_check`, `stage.snapshot`: CPU
seconds; `wall.*`: wall seconds; the snapshot's count is its members): they come before the
first page is published, and the fan-out simulation (shared/bench/simulation.py) models them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from typing import Any

from shared.domain.campaign import Campaign
from shared.domain.errors import ConfigurationError, MirrorBehind, SnapshotUnfinished
from shared.domain.messages import Recipient
from shared.domain.subscriber_mirror import TABLE
from shared.metering import NULL_METER, OperationMeter
from shared.ports import Warehouse
from shared.repositories.audience_snapshots import (
    AudienceSnapshots,
    Manifest,
    Progress,
    SnapshotPages,
)
from shared.services.audience_sql import confirmed_query, members_query

log = logging.getLogger(__name__)

# Dispatch pages per chunk file: a Cloud Storage write ($0.005 per 1,000) per four pages of
# 500 members rather than per page (~$0.008 per million emails less), and a file of 2,000
# members (~300 KB of JSON) is still read whole in a moment.
PAGES_PER_FILE = 4
# One invocation's share of a snapshot (settings.py's default): well inside the dispatch lease
# (300 s) and timeout (540 s); each further piece is one more query job (the members after the
# last one written).
SNAPSHOT_PIECE_S = 120.0


class AudienceSnapshotService:
    def __init__(
        self,
        warehouse: Warehouse,
        snapshots: AudienceSnapshots,
        dialect: str,
        clock: Callable[[], float],
        confirmed_in_documents: Callable[[float], int],
        *,
        chunk_size: int = 500,
        mirror_wait_s: float = 900.0,
        meter: OperationMeter = NULL_METER,
        piece_s: float = SNAPSHOT_PIECE_S,
    ) -> None:
        self._warehouse = warehouse
        self._snapshots = snapshots
        self._dialect = dialect
        self._clock = clock
        self._confirmed_in_documents = confirmed_in_documents
        self.chunk_size = chunk_size  # rows per dispatch page
        self.file_rows = chunk_size * PAGES_PER_FILE
        self._mirror_wait_s = mirror_wait_s
        self._meter = meter
        self._piece_s = piece_s

    def take(self, campaign: Campaign) -> Manifest:
        """The campaign's snapshot: the finished one, or one taken (or taken further) now.
        Raises MirrorBehind while the mirror is still catching up with the documents, and
        SnapshotUnfinished when this invocation's piece is done but the snapshot is not."""
        existing = self._snapshots.manifest(campaign.id)
        if existing is not None:
            return existing
        audience_at = campaign.audience_at or campaign.created_at
        progress = self._snapshots.progress(campaign.id)
        if progress is None:  # checked once, before the first piece
            with self._stage("mirror_check"):
                self._check_mirror(campaign, audience_at)
        with self._stage("snapshot") as count:
            return self._write(campaign, audience_at, progress, count)

    @contextmanager
    def _stage(self, name: str) -> Iterator[list[int]]:
        """Meter the block's CPU and wall seconds as `stage.<name>` and `wall.<name>`, counted
        once or as many as the block sets `count[0]` to."""
        count = [1]
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            yield count
        finally:
            self._meter.count(f"stage.{name}", count[0], seconds=time.thread_time() - cpu)
            self._meter.count(f"wall.{name}", count[0], seconds=time.perf_counter() - wall)

    def _write(
        self, campaign: Campaign, audience_at: float, progress: Progress | None, count: list[int]
    ) -> Manifest:
        """Run the audience query (after the members already written) and write its rows as
        chunk files, then the manifest; or, once this piece's time is up, the progress.
        `count[0]` is set to the members this piece wrote."""
        started = self._clock()
        done = progress or Progress(0, 0, "", started)
        query = members_query(campaign.audience, audience_at, done.last_id or None)
        chunks, members = done.chunks, done.members
        pending: list[Recipient] = []
        size = self.file_rows
        count[0] = 0
        pages = self._warehouse.query_pages(query.for_dialect(self._dialect), query.params,
                                            self.chunk_size)  # fmt: skip
        with closing(pages):  # a piece ends mid-query: the rest stays unread
            for rows in pages:
                pending += [member(row) for row in rows]
                while len(pending) >= size:
                    chunk, pending = pending[:size], pending[size:]
                    chunks += 1
                    self._snapshots.put_chunk(campaign.id, chunks, chunk)
                    members += size
                    count[0] += size
                    if self._clock() - started >= self._piece_s:
                        last = Progress(chunks, members, chunk[-1].subscriber_id, done.taken_at)
                        self._pause(campaign, last)
        if pending:
            chunks += 1
            self._snapshots.put_chunk(campaign.id, chunks, pending)
            members += len(pending)
            count[0] += len(pending)
        manifest = Manifest(campaign.id, chunks, members, done.taken_at)
        self._snapshots.finish(manifest)
        facts = {"campaign_id": campaign.id, "members": members, "chunks": chunks}
        log.info("audience snapshot taken", extra=facts)
        return manifest

    def _pause(self, campaign: Campaign, progress: Progress) -> None:
        """Save where the snapshot goes on, and end this invocation's piece."""
        self._snapshots.save_progress(campaign.id, progress)
        facts = {"campaign_id": campaign.id, "members": progress.members,
                 "chunks": progress.chunks}  # fmt: skip
        log.info("audience snapshot goes on in the next invocation", extra=facts)
        raise SnapshotUnfinished(progress.members)

    def _check_mirror(self, campaign: Campaign, audience_at: float) -> None:
        """Raise MirrorBehind while the mirror holds fewer confirmed subscribers than the
        documents (as of the audience time); after `mirror_wait_s` of waiting, stop with the
        repair instead: the missing rows are not on their way (a dead-lettered warehouse
        message, or a deployment from before the mirror that was never rebuilt)."""
        confirmed = self._confirmed_in_documents(audience_at)
        if not confirmed:
            return
        query = confirmed_query(audience_at)
        (row,) = self._warehouse.query(query.for_dialect(self._dialect), query.params)
        missing = confirmed - int(row["n"])
        if missing <= 0:
            return
        now = self._clock()
        waited = now - (campaign.progress_of(campaign.phase).started_at if campaign.phase else now)
        if waited < self._mirror_wait_s:
            raise MirrorBehind(missing, confirmed)
        raise ConfigurationError(
            f"campaign {campaign.id}: after {waited:.0f} s the subscriber mirror ({TABLE}) "
            f"still lacks {missing} of the {confirmed} confirmed subscribers; replay the "
            "warehouse function's dead letters (`mailpipe dlq list`, `mailpipe dlq replay`) "
            "or run `mailpipe subscribers mirror-rebuild`, then the campaign goes on (or set "
            "MAILPIPE_AUDIENCE_SOURCE=documents)"
        )

    def pages(self, manifest: Manifest, pages_at_once: int = 1) -> SnapshotPages:
        """The snapshot in pages of `pages_at_once` x `chunk_size` rows."""
        return self._snapshots.pages(manifest, pages_at_once * self.chunk_size)

    def erase_subscriber(self, campaign_ids: list[str], subscriber_id: str) -> int:
        return self._snapshots.erase_subscriber(campaign_ids, subscriber_id)


def member(row: Mapping[str, Any]) -> Recipient:
    """A snapshot member from an audience row: what the templates see, as `recipient` makes it
    from a subscriber document."""
    raw = row.get("attributes")
    attributes = json.loads(raw) if isinstance(raw, str) and raw else dict(raw or {})
    return Recipient(
        str(row["subscriber_id"]),
        str(row["email"]),
        str(row.get("first_name") or ""),
        {"attributes": attributes},
        tracking=row.get("tracking") is not False,
    )
