"""Taking a campaign's audience snapshot: the audience SQL (shared/services/audience_sql.py)
run once over the subscriber mirror as of the campaign's `audience_at`, its rows written in id
order as chunk files of `chunk_size` members to the blob store
(shared/repositories/audience_snapshots.py). The query's results are read page by page, so the
dispatch function never holds more than a chunk and a results page of a million-member audience.

Every phase of the campaign walks the same snapshot: an A/B test's remainder phase picks its
cohort from it by the same hash assignment as the test phase, so nothing is stashed between the
phases. Taking it again is harmless until the manifest is written, and a no-op after.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from shared.domain.campaign import Campaign
from shared.domain.errors import ConfigurationError
from shared.domain.messages import Recipient
from shared.domain.subscriber_mirror import TABLE
from shared.ports import Warehouse
from shared.repositories.audience_snapshots import AudienceSnapshots, Manifest, SnapshotPages
from shared.services.audience_sql import members_query

log = logging.getLogger(__name__)


class AudienceSnapshotService:
    def __init__(
        self,
        warehouse: Warehouse,
        snapshots: AudienceSnapshots,
        dialect: str,
        clock: Callable[[], float],
        chunk_size: int = 500,
        has_subscribers: Callable[[], bool] = lambda: True,
    ) -> None:
        self._warehouse = warehouse
        self._snapshots = snapshots
        self._dialect = dialect
        self._clock = clock
        self.chunk_size = chunk_size
        self._has_subscribers = has_subscribers

    def take(self, campaign: Campaign) -> Manifest:
        """The campaign's snapshot: the finished one, or a new one taken now."""
        existing = self._snapshots.manifest(campaign.id)
        if existing is not None:
            return existing
        taken_at = self._clock()
        query = members_query(campaign.audience, campaign.audience_at or campaign.created_at)
        sql = query.for_dialect(self._dialect)
        chunks = members = 0
        pending: list[Recipient] = []
        for rows in self._warehouse.query_pages(sql, query.params, self.chunk_size):
            pending += [member(row) for row in rows]
            while len(pending) >= self.chunk_size:
                chunks += 1
                self._snapshots.put_chunk(campaign.id, chunks, pending[: self.chunk_size])
                members += self.chunk_size
                pending = pending[self.chunk_size :]
        if pending:
            chunks += 1
            self._snapshots.put_chunk(campaign.id, chunks, pending)
            members += len(pending)
        if not members:
            self._refuse_an_empty_mirror(campaign)
        manifest = Manifest(campaign.id, chunks, members, taken_at)
        self._snapshots.finish(manifest)
        facts = {"campaign_id": campaign.id, "members": members, "chunks": chunks}
        log.info("audience snapshot taken", extra=facts)
        return manifest

    def _refuse_an_empty_mirror(self, campaign: Campaign) -> None:
        """An audience of nobody is fine; a mirror of nobody while subscriber documents exist
        means it was never built (a deployment from before the mirror): refuse rather than send
        the campaign to no one."""
        (row,) = self._warehouse.query(f"SELECT COUNT(*) AS n FROM {TABLE}", {})
        if not row["n"] and self._has_subscribers():
            raise ConfigurationError(
                f"campaign {campaign.id}: the subscriber mirror ({TABLE}) is empty; run "
                "`mailpipe subscribers mirror-rebuild` (or set MAILPIPE_AUDIENCE_SOURCE="
                "documents), then the campaign goes on"
            )

    def pages(self, manifest: Manifest, chunks_per_page: int = 1) -> SnapshotPages:
        return self._snapshots.pages(manifest, chunks_per_page)

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
