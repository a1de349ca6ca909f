"""Before a campaign is sent: how many people a segment (and A/B split) reaches, and what sending
to them costs on GCP.

The count is the campaign's audience SQL over the warehouse's subscriber mirror, as the audience
snapshot selects it (shared/services/audience_sql.py): one COUNT query, or for an A/B test the
ids, assigned to cohorts by the same hash as dispatch. With MAILPIPE_AUDIENCE_SOURCE=documents
(no mirror yet) it walks the confirmed subscribers page by page instead, as dispatch then does.

The cost multiplies the operations per email that `make bench` counted (README, "cost per
million emails") by the list prices in shared/pricing.py, so a price change there changes the
estimate too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.domain import ab_test
from shared.domain.ab_test import AbTest
from shared.domain.segment import Segment
from shared.ports import Warehouse
from shared.pricing import PRICES, PRICES_AS_OF
from shared.repositories.audience import AudiencePages
from shared.services.audience import AudiencePlan
from shared.services.engagement import EngagementQueries

# Operations per email of the A/B campaign `make bench` measured (README, "cost per million
# emails"; 20,000 recipients, 2026-12-07): the audience selected once from the subscriber mirror
# (one query, chunk files), one ledger write per batch, Zstandard-compressed batches on Pub/Sub,
# one warehouse row.
PER_EMAIL: Mapping[str, float] = {
    "firestore.read": 0.125,
    "firestore.write": 0.054,
    "pubsub.byte": 2420.0,
    "bigquery.streaming_byte": 1024.0,
    "bigquery.query_byte": 1570.0,
    "storage.class_a": 0.002,
    "storage.class_b": 0.004,
}
FUNCTIONS_USD_PER_EMAIL = 0.025 / 1_000_000  # invocations, CPU and memory, as measured


@dataclass(frozen=True)
class AudienceEstimate:
    """Who a campaign would reach now: everyone, or per A/B cohort and variant."""

    total: int
    variants: dict[str, int] = field(default_factory=dict)  # test cohort per variant
    holdout: int = 0
    remainder: int = 0
    usd: float = 0.0
    prices_as_of: str = PRICES_AS_OF

    def to_doc(self) -> dict[str, Any]:
        return {"total": self.total, "variants": self.variants, "holdout": self.holdout,
                "remainder": self.remainder, "usd": round(self.usd, 6),
                "prices_as_of": self.prices_as_of}  # fmt: skip


def cost_usd(emails: int) -> float:
    """The GCP cost of sending `emails` (the provider's own fees excluded)."""
    per_email = sum(PRICES[name].usd * amount for name, amount in PER_EMAIL.items())
    return emails * (per_email + FUNCTIONS_USD_PER_EMAIL)


class AudienceEstimator:
    def __init__(
        self,
        pages: AudiencePages,
        engagement: EngagementQueries,
        clock: Callable[[], float],
        mirror: MirrorQueries | None = None,
    ) -> None:
        self._pages = pages
        self._engagement = engagement
        self._clock = clock
        self._mirror = mirror

    def estimate(
        self, segment: object, ab: object = None, campaign_id: str = "estimate"
    ) -> AudienceEstimate:
        """InvalidInput (with the segment's or A/B test's own words) for a bad spec."""
        parsed = Segment.parse(segment)
        test = AbTest.from_spec(ab) if ab else None
        now = self._clock()
        if self._mirror is not None:
            return self._mirror.estimate(parsed, test, campaign_id, now)
        engaged = self._engagement.engaged(parsed.engagement_windows(), now)
        plan = AudiencePlan(campaign_id, parsed, test, engaged, now)
        cohorts: Counter[str] = Counter()
        total = 0
        cursor: str | None = None
        while True:
            page = self._pages.page(cursor)
            for subscriber in page:
                if not plan.eligible(subscriber):
                    continue
                total += 1
                if test is not None:
                    assignment = test.assign(campaign_id, subscriber.id)
                    cohorts[assignment.variant or assignment.cohort] += 1
            if len(page) < self._pages.page_size:
                break
            cursor = page[-1].id
        return _estimate(total, test, cohorts)


@dataclass(frozen=True)
class MirrorQueries:
    """The estimate from the subscriber mirror: the audience SQL in the warehouse's dialect."""

    warehouse: Warehouse
    dialect: str
    page_size: int = 10_000

    def estimate(
        self, segment: Segment, test: AbTest | None, campaign_id: str, now: float
    ) -> AudienceEstimate:
        from shared.services.audience_sql import count_query, members_query

        if test is None:
            query = count_query(segment, now)
            (row,) = self.warehouse.query(query.for_dialect(self.dialect), query.params)
            return _estimate(int(row["n"]), None, Counter())
        query = members_query(segment, now)
        cohorts: Counter[str] = Counter()
        total = 0
        sql = query.for_dialect(self.dialect)
        for rows in self.warehouse.query_pages(sql, query.params, self.page_size):
            for row in rows:
                assignment = test.assign(campaign_id, str(row["subscriber_id"]))
                cohorts[assignment.variant or assignment.cohort] += 1
            total += len(rows)
        return _estimate(total, test, cohorts)


def _estimate(total: int, test: AbTest | None, cohorts: Counter[str]) -> AudienceEstimate:
    if test is None:
        return AudienceEstimate(total, usd=cost_usd(total))
    holdout = cohorts[ab_test.HOLDOUT]
    return AudienceEstimate(
        total,
        {v.name: cohorts[v.name] for v in test.variants},
        holdout,
        cohorts[ab_test.REMAINDER],
        usd=cost_usd(total - holdout),
    )
