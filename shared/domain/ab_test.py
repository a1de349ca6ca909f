"""A/B tests: who gets which variant, who is held out, and how the winner is decided.

Assignment is a pure function of (campaign id, subscriber id): a keyless SHA-256 maps each
subscriber to a point in [0, 1). The first `holdout_fraction` of that line is the holdout, the
next `test_fraction` the test cohort (spread over the variants by a second, independent hash),
and the rest the remainder that later receives the winner. Retries, re-dispatches after a
crash, resumes and resends therefore always put a person in the same cohort and variant.

Winner rule (pre-registered, fixed horizon). Everything the decision depends on is fixed when
the campaign is created and cannot change once it starts: the metric (unique clickers, or
unique human openers, per recipient of the variant: machine opens such as Apple Mail Privacy
Protection prefetches do not count), the test window, the minimum sample per variant and the
default variant (the first one listed). The data is looked at exactly once, when the window has
ended, so there is no optional stopping. The variant with the highest rate is compared with
every other variant by a pooled two-proportion z-test (two-sided); with k variants that is
k - 1 comparisons, so each must reach p < 0.05 / (k - 1) (Bonferroni), which keeps the chance of
declaring a winner when all variants are truly equal at or below 5%. The best variant wins only
if every variant reached the minimum sample and every comparison is significant. Otherwise the
pre-declared default (the first variant) is sent to the remainder and the decision says so:
"no significant difference" or "sample too small". A person can override the rule with
`pick-winner` at any time before the remainder is sent; the decision records that it was manual.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.domain.errors import InvalidInput

HOLDOUT, TEST, REMAINDER = "holdout", "test", "remainder"
METRICS = ("clicks", "opens")
ALPHA = 0.05
MAX_VARIANTS = 10
MAX_HOLDOUT = 0.5
MAX_WINDOW_HOURS = 24 * 30
DEFAULT_MIN_SAMPLE = 100
VARIANT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class Variant:
    """One version: its own template and/or a literal subject line (None: the campaign's)."""

    name: str
    template: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class Assignment:
    cohort: str  # holdout | test | remainder
    variant: str | None = None  # set for the test cohort


@dataclass(frozen=True)
class AbTest:
    variants: tuple[Variant, ...]
    test_fraction: float
    holdout_fraction: float = 0.0
    metric: str = "clicks"
    window_hours: float = 4.0
    min_sample: int = DEFAULT_MIN_SAMPLE
    alpha: float = ALPHA

    @classmethod
    def from_spec(cls, spec: object) -> AbTest:
        """Validate an `ab` spec; InvalidInput names the offending key (ab.variants[1].name)."""
        if not isinstance(spec, dict):
            raise _bad("ab", "must be a JSON object")
        known = {"variants", "test_fraction", "holdout_fraction", "metric", "window_hours",
                 "min_sample"}  # fmt: skip
        extra = sorted(set(spec) - known)
        if extra:
            raise _bad("ab", f"has unknown key(s) {', '.join(extra)}; known: {', '.join(known)}")
        variants = _variants(spec.get("variants"))
        test = _fraction(spec.get("test_fraction"), "ab.test_fraction", low_open=True)
        holdout = _fraction(spec.get("holdout_fraction", 0.0), "ab.holdout_fraction")
        if holdout > MAX_HOLDOUT:
            raise _bad("ab.holdout_fraction", f"must be at most {MAX_HOLDOUT}")
        if test + holdout > 1.0 + 1e-9:
            raise _bad("ab", "test_fraction + holdout_fraction must not exceed 1")
        metric = spec.get("metric", "clicks")
        if metric not in METRICS:
            raise _bad("ab.metric", f"must be one of {', '.join(METRICS)}, not {metric!r}")
        return cls(
            variants=variants,
            test_fraction=test,
            holdout_fraction=holdout,
            metric=metric,
            window_hours=_window(spec.get("window_hours", 4.0)),
            min_sample=_min_sample(spec.get("min_sample", DEFAULT_MIN_SAMPLE)),
        )

    def to_spec(self) -> dict[str, Any]:
        spec = asdict(self)
        spec.pop("alpha")
        spec["variants"] = [{k: v for k, v in asdict(x).items() if v is not None}
                            for x in self.variants]  # fmt: skip
        return spec

    @property
    def default(self) -> Variant:
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants)
        raise InvalidInput(f"no variant {name!r}; variants are {known}", field="variant")

    def assign(self, campaign_id: str, subscriber_id: str) -> Assignment:
        """The subscriber's cohort (and variant in the test cohort); stable across retries."""
        point = unit_hash(campaign_id, "cohort", subscriber_id)
        if point < self.holdout_fraction:
            return Assignment(HOLDOUT)
        if point < self.holdout_fraction + self.test_fraction:
            index = int(unit_hash(campaign_id, "variant", subscriber_id) * len(self.variants))
            return Assignment(TEST, self.variants[min(index, len(self.variants) - 1)].name)
        return Assignment(REMAINDER)


def unit_hash(*parts: str) -> float:
    """A deterministic, uniform point in [0, 1) for the parts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# -- the winner rule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantResult:
    """Recipients of a variant in the test cohort, and how many of them converted."""

    name: str
    exposed: int
    converted: int

    @property
    def rate(self) -> float:
        return self.converted / self.exposed if self.exposed else 0.0


@dataclass(frozen=True)
class Comparison:
    """The best variant against one other: z statistic and two-sided p-value."""

    against: str
    z: float
    p_value: float
    significant: bool


@dataclass(frozen=True)
class WinnerDecision:
    winner: str
    significant: bool
    reason: str
    alpha_per_comparison: float
    results: tuple[VariantResult, ...] = ()
    comparisons: tuple[Comparison, ...] = field(default_factory=tuple)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


def two_proportion_z_test(
    converted_a: int, exposed_a: int, converted_b: int, exposed_b: int
) -> tuple[float, float]:
    """Pooled two-proportion z-test: (z, two-sided p-value). p is 1.0 when undefined."""
    if exposed_a <= 0 or exposed_b <= 0:
        return 0.0, 1.0
    pooled = (converted_a + converted_b) / (exposed_a + exposed_b)
    variance = pooled * (1 - pooled) * (1 / exposed_a + 1 / exposed_b)
    if variance <= 0:
        return 0.0, 1.0
    z = (converted_a / exposed_a - converted_b / exposed_b) / math.sqrt(variance)
    return z, math.erfc(abs(z) / math.sqrt(2))


def decide_winner(ab: AbTest, observed: Mapping[str, VariantResult]) -> WinnerDecision:
    """Apply the pre-registered rule (module docstring) once, at the end of the window."""
    results = tuple(observed.get(v.name, VariantResult(v.name, 0, 0)) for v in ab.variants)
    alpha = ab.alpha / max(1, len(results) - 1)
    small = [r.name for r in results if r.exposed < ab.min_sample]
    if small:
        reason = (
            f"sample too small: {', '.join(small)} had fewer than {ab.min_sample} recipients; "
            f"sending the default variant {ab.default.name}"
        )
        return WinnerDecision(ab.default.name, False, reason, alpha, results)
    # The highest rate; ties go to the earlier (pre-declared) variant.
    best = results[max(range(len(results)), key=lambda i: (results[i].rate, -i))]
    comparisons = tuple(_compare(best, other, alpha) for other in results if other is not best)
    if all(c.significant for c in comparisons):
        worst_p = max(c.p_value for c in comparisons)
        reason = (
            f"{best.name} wins: {best.rate:.2%} {_metric_word(ab)}, significant against every "
            f"other variant (largest p = {worst_p:.4f} < {alpha:.4f})"
        )
        return WinnerDecision(best.name, True, reason, alpha, results, comparisons)
    reason = (
        f"no significant difference at alpha {ab.alpha} (Bonferroni {alpha:.4f} per comparison); "
        f"sending the default variant {ab.default.name}"
    )
    return WinnerDecision(ab.default.name, False, reason, alpha, results, comparisons)


def _compare(best: VariantResult, other: VariantResult, alpha: float) -> Comparison:
    z, p = two_proportion_z_test(best.converted, best.exposed, other.converted, other.exposed)
    return Comparison(other.name, z, p, p < alpha and best.rate > other.rate)


def _metric_word(ab: AbTest) -> str:
    return "clicked" if ab.metric == "clicks" else "opened"


# -- validation helpers ------------------------------------------------------------------------


def _variants(raw: object) -> tuple[Variant, ...]:
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
        raise _bad("ab.variants", f"must be a list of 2 to {MAX_VARIANTS} variants")
    variants = tuple(_variant(item, f"ab.variants[{i}]") for i, item in enumerate(raw))
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _bad("ab.variants", f"names must be unique; repeated: {', '.join(duplicates)}")
    return variants


def _variant(raw: object, where: str) -> Variant:
    if not isinstance(raw, dict):
        raise _bad(where, 'must be an object like {"name": "A", "subject": "..."}')
    extra = sorted(set(raw) - {"name", "template", "subject"})
    if extra:
        raise _bad(where, f"has unknown key(s) {', '.join(extra)}")
    name = raw.get("name")
    if not isinstance(name, str) or not VARIANT_NAME.match(name):
        raise _bad(f"{where}.name", "must be 1-32 letters, digits, - or _")
    for key in ("template", "subject"):
        if raw.get(key) is not None and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise _bad(f"{where}.{key}", "must be a non-empty text when given")
    return Variant(name, raw.get("template"), raw.get("subject"))


def _fraction(raw: object, where: str, low_open: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _bad(where, "must be a number between 0 and 1")
    value = float(raw)
    if not (0 < value <= 1 if low_open else 0 <= value < 1):
        raise _bad(where, "must be in (0, 1]" if low_open else "must be in [0, 1)")
    return value


def _window(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= MAX_WINDOW_HOURS:
        raise _bad("ab.window_hours", f"must be a number of hours in (0, {MAX_WINDOW_HOURS}]")
    return float(raw)


def _min_sample(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 10_000_000:
        raise _bad("ab.min_sample", "must be a whole number of recipients, at least 1")
    return raw


def _bad(where: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{where} {problem}", field="ab")


def results_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, VariantResult]:
    """VariantResults from warehouse rows with columns variant, exposed, converted."""
    return {
        str(r["variant"]): VariantResult(str(r["variant"]), int(r["exposed"]), int(r["converted"]))
        for r in rows
        if r.get("variant") is not None
    }
