"""A/B tests: stable hash assignment, cohort sizes, and the pre-registered winner rule."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.ab_test import (
    HOLDOUT,
    REMAINDER,
    TEST,
    AbTest,
    VariantResult,
    decide_winner,
    two_proportion_z_test,
)
from shared.domain.errors import InvalidInput

SPEC = {
    "variants": [{"name": "A"}, {"name": "B", "subject": "Another subject"}],
    "test_fraction": 0.2,
    "holdout_fraction": 0.1,
    "metric": "clicks",
    "window_hours": 4,
    "min_sample": 100,
}


@pytest.fixture
def ab() -> AbTest:
    return AbTest.from_spec(SPEC)


# -- assignment --------------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=40))
def test_assignment_is_stable_across_retries(subscriber_id):
    ab = AbTest.from_spec(SPEC)
    first = ab.assign("spring", subscriber_id)
    assert all(ab.assign("spring", subscriber_id) == first for _ in range(3))
    assert AbTest.from_spec(dict(SPEC)).assign("spring", subscriber_id) == first


def test_cohorts_have_the_declared_sizes(ab):
    counts = Counter()
    variants = Counter()
    n = 40_000
    for i in range(n):
        assignment = ab.assign("spring", f"s{i:08d}")
        counts[assignment.cohort] += 1
        if assignment.variant:
            variants[assignment.variant] += 1
    # Binomial: 4 standard deviations leaves no room for flakiness and little for bias.
    for cohort, share in ((HOLDOUT, 0.1), (TEST, 0.2), (REMAINDER, 0.7)):
        sd = math.sqrt(n * share * (1 - share))
        assert abs(counts[cohort] - n * share) < 4 * sd, (cohort, counts)
    assert abs(variants["A"] - variants["B"]) < 4 * math.sqrt(counts[TEST] * 0.25) * 2
    assert set(variants) == {"A", "B"}


def test_only_the_test_cohort_has_a_variant(ab):
    for i in range(2000):
        assignment = ab.assign("spring", f"s{i}")
        assert (assignment.variant is not None) == (assignment.cohort == TEST)


def test_different_campaigns_shuffle_people_differently(ab):
    same = sum(ab.assign("c1", f"s{i}") == ab.assign("c2", f"s{i}") for i in range(2000))
    assert same < 1900  # independent draws agree about 54% of the time here


# -- the winner rule ---------------------------------------------------------------------------


def test_z_test_matches_a_hand_computed_value():
    # 60/1000 vs 40/1000: pooled p = 0.05, se = sqrt(0.05*0.95*0.002) = 0.0097468, z = 2.0520
    z, p = two_proportion_z_test(60, 1000, 40, 1000)
    assert z == pytest.approx(2.0520, abs=1e-4)
    assert p == pytest.approx(0.04016, abs=1e-4)


def test_z_test_is_undefined_without_data():
    assert two_proportion_z_test(0, 0, 5, 10) == (0.0, 1.0)
    assert two_proportion_z_test(0, 100, 0, 100) == (0.0, 1.0)


def test_a_clear_difference_picks_the_better_variant(ab):
    results = {"A": VariantResult("A", 2000, 100), "B": VariantResult("B", 2000, 170)}
    decision = decide_winner(ab, results)
    assert decision.winner == "B" and decision.significant
    assert decision.comparisons[0].against == "A" and decision.comparisons[0].p_value < 0.001
    assert "B wins" in decision.reason


def test_no_significant_difference_falls_back_to_the_default(ab):
    results = {"A": VariantResult("A", 2000, 100), "B": VariantResult("B", 2000, 110)}
    decision = decide_winner(ab, results)
    assert decision.winner == "A" and not decision.significant
    assert "no significant difference" in decision.reason


def test_too_small_a_sample_refuses_to_pick(ab):
    # A huge effect, but below the pre-declared minimum of 100 recipients per variant.
    results = {"A": VariantResult("A", 99, 1), "B": VariantResult("B", 99, 60)}
    decision = decide_winner(ab, results)
    assert decision.winner == "A" and not decision.significant
    assert "sample too small" in decision.reason and "A, B" in decision.reason


def test_a_variant_nobody_received_counts_as_too_small(ab):
    decision = decide_winner(ab, {"A": VariantResult("A", 5000, 300)})
    assert decision.winner == "A" and "sample too small: B" in decision.reason


def test_bonferroni_needs_every_comparison_to_clear_the_corrected_alpha():
    three = AbTest.from_spec({**SPEC, "variants": [{"name": "A"}, {"name": "B"}, {"name": "C"}]})
    # B beats A at p ~ 0.04 (fine alone) but not at 0.05 / 2 = 0.025.
    results = {
        "A": VariantResult("A", 1000, 40),
        "B": VariantResult("B", 1000, 60),
        "C": VariantResult("C", 1000, 20),
    }
    decision = decide_winner(three, results)
    assert decision.alpha_per_comparison == pytest.approx(0.025)
    assert decision.winner == "A" and not decision.significant
    two = decide_winner(AbTest.from_spec(SPEC), {k: results[k] for k in "AB"})
    assert two.winner == "B" and two.significant


def test_ties_go_to_the_earlier_variant(ab):
    results = {"A": VariantResult("A", 500, 50), "B": VariantResult("B", 500, 50)}
    assert decide_winner(ab, results).winner == "A"


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": [{"name": "A"}]}, "ab.variants must be a list of 2 to 10"),
        ({"variants": [{"name": "A"}, {"name": "A"}]}, "repeated: A"),
        ({"variants": [{"name": "A"}, {"name": "B b"}]}, "ab.variants[1].name"),
        ({"variants": [{"name": "A"}, {"name": "B", "colour": 1}]}, "ab.variants[1] has unknown"),
        ({"test_fraction": 0}, "ab.test_fraction must be in (0, 1]"),
        ({"holdout_fraction": 0.6}, "ab.holdout_fraction must be at most 0.5"),
        ({"test_fraction": 0.8, "holdout_fraction": 0.3}, "must not exceed 1"),
        ({"metric": "revenue"}, "ab.metric must be one of clicks, opens"),
        ({"window_hours": 0}, "ab.window_hours must be a number of hours"),
        ({"min_sample": 0}, "ab.min_sample must be a whole number"),
        ({"alpha": 0.1}, "ab has unknown key(s) alpha"),
    ],
)
def test_bad_specs_name_the_offending_key(change, message):
    with pytest.raises(InvalidInput) as caught:
        AbTest.from_spec({**SPEC, **change})
    assert message in str(caught.value)


def test_spec_round_trips(ab):
    assert AbTest.from_spec(ab.to_spec()) == ab
