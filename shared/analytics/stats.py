"""Confidence intervals for the rates the dashboards show.

The Wilson score interval stays inside [0, 1] and behaves at small counts and rates near 0,
where the textbook normal interval (p ± z·sqrt(p(1-p)/n)) collapses to a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Interval:
    """A rate's estimate and its confidence interval, as fractions of 1."""

    estimate: float
    low: float
    high: float
    confidence: float


def z_for(confidence: float) -> float:
    """The two-sided standard normal quantile for `confidence` (1.95996... for 0.95)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Interval | None:
    """The Wilson score interval for `successes` out of `trials`; None when trials is 0.
    Raises ValueError for negative counts or more successes than trials."""
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return None
    z = z_for(confidence)
    p = successes / trials
    z2n = z * z / trials
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / trials + z2n / (4 * trials)) / (1 + z2n)
    # At 0 or all successes the bound is exactly 0 or 1; rounding would leave it a hair off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(p, low, high, confidence)
