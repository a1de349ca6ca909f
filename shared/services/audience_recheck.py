"""The send stage's re-check of a snapshot campaign's batch: who left the audience since the
snapshot. One warehouse query per batch over the subscriber mirror, reading only the rows
changed since the campaign's audience time (shared/services/audience_sql.py recheck_query), and
re-evaluating eligibility and the segment for just those of the batch: unsubscribed, suppressed,
erased, removed from the segment's list ... Everyone else is sent without any read.

Unsubscribes, suppressions and erasures are also caught by the suppression list re-check
(shared/services/sending.py `_drop_suppressed`), which does not wait for the mirror."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from shared.domain.campaign import Campaign
from shared.domain.errors import NotFound
from shared.domain.segment import Segment
from shared.ports import Warehouse
from shared.services.audience_sql import recheck_query

CLOCK_SKEW_S = 300.0  # mirror rows are stamped by other machines' clocks


class AudienceRecheck:
    def __init__(
        self, warehouse: Warehouse, dialect: str, campaign_of: Callable[[str], Campaign]
    ) -> None:
        self._warehouse = warehouse
        self._dialect = dialect
        self._segment_of = lru_cache(maxsize=64)(self._lookup(campaign_of))

    @staticmethod
    def _lookup(campaign_of: Callable[[str], Campaign]) -> Callable[[str], Segment | None]:
        """The segment of a snapshot campaign (None for others, and for a campaign deleted
        meanwhile); a campaign's segment never changes once it sends, so it is kept."""

        def segment(campaign_id: str) -> Segment | None:
            try:
                campaign = campaign_of(campaign_id)
            except NotFound:
                return None
            return campaign.audience if campaign.audience_snapshot else None

        return segment

    def left(self, campaign_id: str, audience_at: float, ids: Sequence[str]) -> set[str]:
        """Those of `ids` who no longer belong to the campaign's audience."""
        segment = self._segment_of(campaign_id) if ids else None
        if segment is None:
            return set()
        query = recheck_query(segment, audience_at, ids, audience_at - CLOCK_SKEW_S)
        rows = self._warehouse.query(query.for_dialect(self._dialect), query.params)
        return {str(r["subscriber_id"]) for r in rows if not r["still"]}
