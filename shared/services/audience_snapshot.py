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

Both steps are metered as stages of their own (`stage.mirror_check`, `stage.snapshot`: CPU
seconds; `wall.*`: wall seconds; the snapshot's count is its members): they come before the
first page is published, and the fan-out simulation (shared/bench/simulation.py) models them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from shared.domain.campaign import Campaign
from shared.domain.errors import ConfigurationError, MirrorBehind
from shared.domain.messages import Recipient
from shared.domain.subscriber_mirror import TABLE
from shared.metering import NULL_METER, OperationMeter
from shared.ports import Warehouse
from shared.repositories.audience_snapshots import AudienceSnapshots, Manifest, SnapshotPages
from shared.services.audience_sql import confirmed_query, members_query

log = logging.getLogger(__name__)

# Dispatch pages per chunk file: a Cloud Storage write ($0.005 per 1,000) per four pages of
# 500 members rather than per page (~$0.008 per million emails less), and a file of 2,000
# members (~300 KB of JSON) is still read whole in a moment.
PAGES_PER_FILE = 4


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

    def take(self, campaign: Campaign) -> Manifest:
        """The campaign's snapshot: the finished one, or a new one taken now. Raises
        MirrorBehind while the mirror is still catching up with the documents."""
        existing = self._snapshots.manifest(campaign.id)
        if existing is not None:
            return existing
        audience_at = campaign.audience_at or campaign.created_at
        with self._stage("mirror_check"):
            self._check_mirror(campaign, audience_at)
        with self._stage("snapshot") as count:
            manifest = self._write(campaign, audience_at)
            count[0] = manifest.members
        return manifest

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

    def _write(self, campaign: Campaign, audience_at: float) -> Manifest:
        """Run the audience query and write its rows as chunk files, then the manifest."""
        taken_at = self._clock()
        query = members_query(campaign.audience, audience_at)
        sql = query.for_dialect(self._dialect)
        chunks = members = 0
        pending: list[Recipient] = []
        size = self.file_rows
        for rows in self._warehouse.query_pages(sql, query.params, self.chunk_size):
            pending += [member(row) for row in rows]
            while len(pending) >= size:
                chunks += 1
                self._snapshots.put_chunk(campaign.id, chunks, pending[:size])
                members += size
                pending = pending[size:]
        if pending:
            chunks += 1
            self._snapshots.put_chunk(campaign.id, chunks, pending)
            members += len(pending)
        manifest = Manifest(campaign.id, chunks, members, taken_at)
        self._snapshots.finish(manifest)
        facts = {"campaign_id": campaign.id, "members": members, "chunks": chunks}
        log.info("audience snapshot taken", extra=facts)
        return manifest

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
