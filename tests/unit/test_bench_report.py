"""The benchmark's memory curve: the null-provider A/B runs only, by audience, the median of
repeated runs."""

from __future__ import annotations

from shared.bench.__main__ import _memory_curve, _peak_rss_runs


def _run(audience: int, provider: str, ab: bool, runner: float, child: float) -> dict:
    return {"audience": audience, "provider": provider, "ab_test": ab,
            "peak_rss_mb": {"runner_process": runner, "largest_worker_process": child}}  # fmt: skip


def test_the_curve_takes_each_null_ab_runs_largest_process_in_audience_order():
    runs = {
        "null": _run(100_000, "null", True, 158.0, 140.0),
        "smtp": _run(100_000, "smtp", True, 250.0, 140.0),
        "null_small": _run(20_000, "null", True, 120.0, 146.0),
        "null_plain": _run(100_000, "null", False, 290.0, 1.0),
        "null_large": _run(200_000, "null", True, 151.0, 150.0),
    }
    peaks = _peak_rss_runs(list(runs.values()))

    assert peaks == {20_000: [146.0], 100_000: [158.0], 200_000: [151.0]}
    assert _memory_curve(peaks) == {"20000": 146.0, "100000": 158.0, "200000": 151.0}


def test_repeated_runs_give_the_median_of_each_audience():
    runs = [
        _run(20_000, "null", True, 130.0, 100.0),
        _run(100_000, "null", True, 134.0, 110.0),
        _run(20_000, "null", True, 124.0, 126.0),
        _run(100_000, "null", True, 120.0, 129.0),
        _run(20_000, "null", True, 133.0, 90.0),
    ]

    peaks = _peak_rss_runs(runs)

    assert peaks == {20_000: [130.0, 126.0, 133.0], 100_000: [134.0, 129.0]}
    assert _memory_curve(peaks) == {"20000": 130.0, "100000": 131.5}
