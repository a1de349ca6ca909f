"""Before a campaign is sent: how many people a segment (and A/B split) reaches, and what
sending to them costs on GCP.

The count walks the confirmed subscribers page by page, as dispatch does, and applies the same
eligibility (mailable, segment, engagement from one warehouse query). The cost multiplies the
operations per email that `make bench` counted (README, "cost per million emails") by the list
prices in shared/pricing.py, so a price change there changes the estimate too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.domain import ab_test
from shared.domain.ab_test import AbTest
from shared.domain.segment import Segment
from shared.pricing import PRICES, PRICES_AS_OF
from shared.repositories.audience import AudiencePages
from shared.services.audience import AudiencePlan
from shared.services.engagement import EngagementQueries

# Operations per email of the A/B campaign `make bench` measured (README): the audience read
# once, one ledger write per batch, Zstandard-compressed batches on Pub/Sub, one warehouse row.
PER_EMAIL: Mapping[str, float] = {
    "firestore.read": 1.11,
    "firestore.write": 0.056,
    "pubsub.byte": 2400.0,
    "bigquery.streaming_byte": 1024.0,
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
        self, pages: AudiencePages, engagement: EngagementQueries, clock: Callable[[], float]
    ) -> None:
        self._pages = pages
        self._engagement = engagement
        self._clock = clock

    def estimate(
        self, segment: object, ab: object = None, campaign_id: str = "estimate"
    ) -> AudienceEstimate:
        """InvalidInput (with the segment's or A/B test's own words) for a bad spec."""
        parsed = Segment.parse(segment)
        test = AbTest.from_spec(ab) if ab else None
        now = self._clock()
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
