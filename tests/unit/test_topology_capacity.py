"""Per-function capacity in shared/topology.py: only combinations Cloud Run functions (2nd gen)
accepts, and the cost model bills the CPU a function is given."""

from __future__ import annotations

import pytest

from shared import topology
from shared.bench import cost
from shared.topology import Function


def test_capacity_is_instances_times_concurrency() -> None:
    render = topology.function("render")
    assert render.capacity == render.max_instances * render.concurrency
    assert Function("x", "x", cpu=2, concurrency=80, max_instances=3).capacity == 240


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"concurrency": 2}, "at least 1 vCPU"),  # 256 MB: 0.167 vCPU
        ({"cpu": 0.5, "concurrency": 8}, "at least 1 vCPU"),
        ({"cpu": 1, "concurrency": 1001}, "concurrency must be"),
        ({"concurrency": 0}, "concurrency must be"),
        ({"cpu": 1.5}, "whole number"),
        ({"cpu": 0.05}, "whole number"),
        ({"cpu": 0.4, "memory_mb": 1024}, "more than 512 MB"),
        ({"cpu": 0.8, "memory_mb": 2048}, "more than 512 MB"),
    ],
)
def test_refuses_what_cloud_run_refuses(settings: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Function("x", "x", **settings)  # type: ignore[arg-type]


def test_cpu_defaults_to_the_memory_tier() -> None:
    assert Function("x", "x").vcpu == 0.167
    assert Function("x", "x", memory_mb=512).vcpu == 0.333
    assert Function("x", "x", memory_mb=512, cpu=1).vcpu == 1


@pytest.mark.parametrize("fn", topology.FUNCTIONS, ids=lambda f: f.name)
def test_every_function_is_one_cloud_run_accepts(fn: Function) -> None:
    assert fn.concurrency == 1 or fn.vcpu >= 1
    assert fn.max_instances >= 1 and fn.capacity >= 1


def test_cost_bills_the_functions_own_cpu() -> None:
    """Render has 1 vCPU (not the 0.333 of its 512 MB): one CPU-second is one instance-second,
    0.5 GiB-seconds at 512 MB."""
    operations = {"function.render": {"operations": 1, "bytes": 0, "seconds": 1000.0}}
    dollars = cost.per_million(operations, 1_000_000)["components_usd_per_million"]
    assert dollars["functions_memory"] == round(1000 * 0.5 * 0.0000025, 4)
