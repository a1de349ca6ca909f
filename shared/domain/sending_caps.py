"""Daily sending caps and warm-up schedules for a sending domain (no I/O).

A new domain (or IP) that jumps to full volume looks like a spammer to mailbox providers; it
earns reputation by sending a little more each day. `DailyCap` says how many campaign
recipients a domain may be dispatched on a UTC day: the warm-up schedule's volume for that
day (a list of volumes, day 1 first; or a start volume multiplied by `growth` each day),
never above `daily_cap`; after the schedule, `daily_cap` alone (0: no cap at all).

`grant` decides how much of a page to take from what is left today: all of it when it fits,
else a part, but not a sliver (at least a twentieth of the day's volume, or what is left when
less is wanted), so that a day's tail is a few pages, not hundreds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from shared.domain.errors import ConfigurationError

MIN_GRANT_FRACTION = 20  # a partial grant is at least 1/20 of the day's volume


@dataclass(frozen=True)
class DailyCap:
    daily_cap: int = 0  # 0: none once warmed up
    volumes: tuple[int, ...] = ()  # warm-up volumes, day 1 first
    start_volume: int = 0  # or: day 1's volume, times `growth` each following day
    growth: float = 1.5
    start: date | None = None  # day 1 of the warm-up

    def __post_init__(self) -> None:
        if self.daily_cap < 0 or self.start_volume < 0 or any(v <= 0 for v in self.volumes):
            raise ConfigurationError(
                "MAILPIPE_DAILY_CAP, MAILPIPE_WARMUP_VOLUMES and MAILPIPE_WARMUP_START_VOLUME "
                "must be positive numbers"
            )
        if (self.volumes or self.start_volume) and self.start is None:
            raise ConfigurationError("a warm-up schedule needs MAILPIPE_WARMUP_START (YYYY-MM-DD)")
        if self.start_volume and self.growth < 1.0:
            raise ConfigurationError("MAILPIPE_WARMUP_GROWTH must be 1.0 or more")

    @property
    def enabled(self) -> bool:
        return bool(self.daily_cap or self.volumes or self.start_volume)

    def limit(self, day: date) -> int | None:
        """Recipients allowed on `day`; None: no limit."""
        warm = self._warmup(day)
        if warm is None:
            return self.daily_cap or None
        return min(warm, self.daily_cap) if self.daily_cap else warm

    def _warmup(self, day: date) -> int | None:
        if self.start is None:
            return None
        index = max(0, (day - self.start).days)  # before day 1: day 1's volume
        if self.volumes:
            return self.volumes[index] if index < len(self.volumes) else None
        if self.start_volume:
            grown = self.start_volume * self.growth**index
            return int(min(grown, 2**53)) if math.isfinite(grown) else 2**53
        return None


def grant(want: int, left: int, limit: int) -> int:
    """How much of `want` to take when `left` of today's `limit` remains (0: wait)."""
    if want <= left:
        return want
    smallest = min(want, max(1, limit // MIN_GRANT_FRACTION))
    return left if left >= smallest else 0


def utc_day(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()


def next_day_starts(at: float) -> float:
    """The epoch second at which the UTC day after `at`'s begins."""
    following = utc_day(at) + timedelta(days=1)
    return datetime(following.year, following.month, following.day, tzinfo=UTC).timestamp()


def parse_day(text: str, setting: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigurationError(f"{setting}={text!r} is not a date (YYYY-MM-DD)") from exc
