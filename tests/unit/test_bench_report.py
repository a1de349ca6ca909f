"""The benchmark's memory curve: the null-provider A/B runs only, by audience."""

from __future__ import annotations

from shared.bench.__main__ import _memory_curve


def _run(audience: int, provider: str, ab: bool, runner: float, child: float) -> dict:
    return {"audience": audience, "provider": provider, "ab_test": ab,
            "peak_rss_mb": {"runner_process": runner, "largest_child_process": child}}  # fmt: skip


def test_the_curve_takes_each_null_ab_runs_largest_process_in_audience_order():
    runs = {
        "null": _run(100_000, "null", True, 158.0, 140.0),
        "smtp": _run(100_000, "smtp", True, 250.0, 140.0),
        "null_small": _run(20_000, "null", True, 120.0, 146.0),
        "null_plain": _run(100_000, "null", False, 290.0, 1.0),
        "null_large": _run(200_000, "null", True, 151.0, 150.0),
    }
    assert _memory_curve(runs) == {"20000": 146.0, "100000": 158.0, "200000": 151.0}
