"""Daily caps at dispatch: how much of a page may go today, for the campaign's sending domain.

Dispatch asks before it plans a page: `take` reserves the page's recipients (an upper bound:
one per subscriber row, or a stash page's members) from the day's counter under the page's
key and returns the longest prefix of the rows that fits. The page's planned end is then the
last row taken, so what is left of the audience goes on the next day from the same cursor, in
the same order, and batch ids stay deterministic. Once the page is published, `settle` gives
back what it did not dispatch (exclusions, holdouts, the A/B test phase's non-cohort rows).
Nothing is per recipient: one counter read-modify-write per page, two with the settle.

Crash safety: the reservation is keyed by `<campaign>:<phase>:<page>`, so a replayed or
redelivered page gets the same grant again. A crash between the reservation and the page's
checkpoint that is replayed on the next UTC day reserves that day too: the count errs high
(by at most a page), never low. Likewise a page reserved just before midnight and published
just after counts toward the day it was reserved on.

Limitation: an A/B remainder walks stash pages, which cannot be split; a stash page larger
than the whole day's volume waits for a day whose volume is larger.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from email.utils import parseaddr
from typing import Any, TypeVar

from shared.domain.campaign import Campaign
from shared.domain.sending_caps import DailyCap, next_day_starts, utc_day
from shared.repositories.sending_days import SendingDays

Row = TypeVar("Row")


@dataclass(frozen=True)
class Taken:
    rows: list[Any]
    day: str  # the reservation's day, "" when no cap applies


class DailyAllowance:
    def __init__(
        self,
        days: SendingDays,
        cap: DailyCap,
        default_sender: str,
        clock: Callable[[], float],
    ) -> None:
        self._days = days
        self._cap = cap
        self._default_domain = _domain(default_sender)
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._cap.enabled

    def domain_of(self, campaign: Campaign) -> str:
        return _domain(campaign.sender) if campaign.sender else self._default_domain

    def take(
        self,
        campaign: Campaign,
        phase: str,
        page: int,
        rows: Sequence[Row],
        weight: Callable[[Row], int],
    ) -> Taken:
        """The prefix of `rows` that today's allowance covers (all of them when uncapped)."""
        day = utc_day(self._clock())
        limit = self._cap.limit(day)
        if limit is None:
            return Taken(list(rows), "")
        domain, key = self.domain_of(campaign), _key(campaign, phase, page)
        weights = [weight(r) for r in rows]
        granted = self._days.reserve(domain, day, key, sum(weights), limit)
        taken, total = 0, 0
        while taken < len(rows) and total + weights[taken] <= granted:
            total += weights[taken]
            taken += 1
        if total < granted:
            self._days.settle(domain, day, key, total)
        return Taken(list(rows[:taken]), day.isoformat())

    def settle(self, campaign: Campaign, phase: str, page: int, day: str, used: int) -> None:
        """Page `page` (reserved on `day`) dispatched `used` recipients."""
        if day:
            key = _key(campaign, phase, page)
            self._days.settle(self.domain_of(campaign), date.fromisoformat(day), key, used)

    def resumes_at(self) -> float:
        return next_day_starts(self._clock())

    def status(self, campaign: Campaign) -> dict[str, Any] | None:
        """Today's allowance of the campaign's domain, and when a held campaign goes on."""
        day = utc_day(self._clock())
        limit = self._cap.limit(day)
        if limit is None:
            return None
        usage = self._days.usage(self.domain_of(campaign), day, limit)
        return {"domain": usage.domain, "day": day.isoformat(), "limit": limit,
                "used": usage.used, "left_today": usage.left,
                "held_until": campaign.held_until()}  # fmt: skip


def _key(campaign: Campaign, phase: str, page: int) -> str:
    return f"{campaign.id}:{phase}:{page:06d}"


def _domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2].lower() or "default"
