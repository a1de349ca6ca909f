"""The send stage's re-check of a snapshot campaign's batch: who left the audience since the
snapshot. One warehouse query over the subscriber mirror reads only the rows changed since the
campaign's audience time (shared/services/audience_sql.py recheck_query) and re-evaluates
eligibility and the segment for just those: unsubscribed, suppressed, erased, removed from the
segment's list ... Recipients in that set are dropped; everyone else is sent without any read.

The answer is kept per campaign for `ttl_s` (MAILPIPE_AUDIENCE_RECHECK_TTL_S): BigQuery bills at
least 10 MB per query, so a query per batch (ttl 0) would cost about $0.06 per thousand batches;
with a TTL a change reaches the send stage at most that long after it reaches the mirror. The
answer is also shared between send instances (shared/repositories/audience_rechecks.py): an
instance whose copy has expired first reads the shared one (one Firestore read), and asks the
warehouse only when that too is older than the TTL, so a campaign costs one query per TTL
rather than one per send instance per TTL.

Unsubscribes, suppressions and erasures are also caught by the suppression list re-check
(shared/services/sending.py `_drop_suppressed`), which does not wait for the mirror."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import lru_cache

from shared.domain.campaign import Campaign
from shared.domain.errors import NotFound
from shared.domain.segment import Segment
from shared.ports import Warehouse
from shared.repositories.audience_rechecks import AudienceRechecks, RecheckAnswer
from shared.services.audience_sql import recheck_query

CLOCK_SKEW_S = 300.0  # mirror rows are stamped by other machines' clocks


class AudienceRecheck:
    def __init__(
        self,
        warehouse: Warehouse,
        dialect: str,
        campaign_of: Callable[[str], Campaign],
        clock: Callable[[], float],
        ttl_s: float = 30.0,
        shared: AudienceRechecks | None = None,
    ) -> None:
        self._warehouse = warehouse
        self._dialect = dialect
        self._segment_of = lru_cache(maxsize=64)(self._lookup(campaign_of))
        self._clock = clock
        self._ttl_s = ttl_s
        self._shared = shared if ttl_s > 0 else None
        self._known: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

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
        return set(ids) & self._gone(campaign_id, segment, audience_at)

    def _gone(self, campaign_id: str, segment: Segment, audience_at: float) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            known = self._known.get(campaign_id)
            if known is not None and now - known[0] < self._ttl_s:
                return known[1]
        answer = self._shared.get(campaign_id) if self._shared else None
        if answer is None or now - answer.checked_at >= self._ttl_s:
            answer = RecheckAnswer(now, self._query(segment, audience_at))
            if self._shared:
                self._shared.put(campaign_id, answer)
        with self._lock:  # as old as the query that answered, wherever it ran
            self._known[campaign_id] = (answer.checked_at, answer.gone)
            if len(self._known) > 64:  # campaigns long finished
                del self._known[min(self._known, key=lambda c: self._known[c][0])]
        return answer.gone

    def _query(self, segment: Segment, audience_at: float) -> frozenset[str]:
        query = recheck_query(segment, audience_at, audience_at - CLOCK_SKEW_S)
        rows = self._warehouse.query(query.for_dialect(self._dialect), query.params)
        return frozenset(str(r["subscriber_id"]) for r in rows)
