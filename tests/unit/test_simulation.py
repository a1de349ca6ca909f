"""The fan-out simulation's logic on small deterministic cases (shared/bench/simulation.py)."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace

import pytest

from shared import topology
from shared.bench import simulation
from shared.bench.simulation import Scenario, Stage, simulate
from shared.bench.simulation_agreement import local_scenario
from shared.topology import RetryPolicy


def stage(name: str, instances: int = 1, concurrency: int = 1, attempts: int = 5, *,
          cpu_s: float = 0.001, cold_start_s: float = 0.0) -> Stage:  # fmt: skip
    return Stage(name, instances, concurrency, 1.0, 512, cpu_s, 0.0,
                 RetryPolicy(10, 600, attempts), cold_start_s)  # fmt: skip


def burst(batches: int, render: Stage, **kwargs: float) -> Scenario:
    """`batches` render batches of 250 all published at t=0 (dispatch costs nothing)."""
    options = {"esp_rate_per_s": 0.0, "dispatch_s_per_recipient": 0.0, "page_read_s": 0.0,
               "dispatch_vcpu": 1.0,
               "send_batches_per_render_batch": 1.0, "page_size": 250 * batches,
               **kwargs}  # fmt: skip
    return Scenario(batches * 250, render, stage("send", 1000), **options)  # type: ignore[arg-type]


def test_capacity_one_and_too_few_attempts_dead_letters_the_rest() -> None:
    """10 at once, capacity 1, 5 attempts: one rendered per wave (t = 0, 10, 30, 70, 150 s),
    the 5 refused a fifth time are dead letters; refusals 9 + 8 + 7 + 6 + 5."""
    result = simulate(burst(10, stage("render", attempts=5)))
    assert result.dead_letters == 5 and result.dead_lettered_recipients == 5 * 250
    assert result.refused_pushes["render"] == 9 + 8 + 7 + 6 + 5
    assert result.invocations["render"] == 5
    assert result.seconds_to_send == pytest.approx(150, abs=0.1)


def test_enough_attempts_dead_letter_nothing() -> None:
    """The same burst with 20 attempts: wave k refuses 10 - k; the tenth batch goes after
    10+20+40+80+160+320+600+600+600 s of backoff."""
    result = simulate(burst(10, stage("render", attempts=20)))
    assert result.dead_letters == 0
    assert result.refused_pushes["render"] == sum(range(1, 10))
    assert result.seconds_to_send == pytest.approx(2430, abs=0.1)


def test_new_instances_start_cold_up_to_the_maximum() -> None:
    result = simulate(burst(3, stage("render", instances=3, cold_start_s=3.0)))
    assert result.peak_instances_by_function["render"] == 3
    assert result.dead_letters == 0 and result.refused_pushes["render"] == 0
    assert result.seconds_to_send == pytest.approx(3.0, abs=0.01)


def test_concurrent_requests_share_the_instances_vcpu() -> None:
    """Four 1 s renders on one 1-vCPU instance of concurrency 4: the last ends after 4 s of
    CPU, not 1."""
    result = simulate(burst(4, stage("render", concurrency=4, cpu_s=1.0)))
    assert result.peak_instances_by_function["render"] == 1
    assert result.seconds_to_send == pytest.approx(4.0, abs=0.01)


def test_the_provider_rate_bounds_the_time_to_send() -> None:
    result = simulate(burst(8, stage("render", instances=8), esp_rate_per_s=100.0))
    assert result.seconds_to_send == pytest.approx(2000 / 100 + simulation.ESP_ROUND_TRIP_S)


def test_pacing_spreads_dispatch_over_the_rate() -> None:
    paced = simulate(burst(40, stage("render", instances=10), pacing_per_s=1000.0,
                           page_size=500))  # fmt: skip
    assert paced.seconds_to_send == pytest.approx(9.5, abs=0.1)  # the last page at 9,500/1,000


def test_production_figures_for_a_million() -> None:
    """At the production topology, paced at the provider's rate: nothing refused or dead-
    lettered, the provider's rate sets the time; unpaced, the send function fills up."""
    paced = simulate(simulation.production(1_000_000))
    assert paced.dead_letters == 0 and sum(paced.refused_pushes.values()) == 0
    assert paced.seconds_to_first_page > 2 * simulation.BIGQUERY_QUERY_S  # the snapshot first
    sending_s = paced.seconds_to_send - paced.seconds_to_first_page
    assert sending_s == pytest.approx(1_000_000 / 1000, rel=0.02)
    unpaced = simulate(simulation.production(1_000_000, pacing_per_s=0))
    assert unpaced.peak_instances_by_function["send"] == topology.function("send").max_instances
    assert unpaced.cost_usd["total"] > paced.cost_usd["total"]


def test_a_ten_million_snapshot_is_taken_in_pieces_each_within_dispatchs_timeout() -> None:
    """At dispatch's 0.167 vCPU a 10 M snapshot (~1,140 s) is far past its 540 s timeout in one
    invocation: it is taken in pieces of SNAPSHOT_PIECE_S, each a query job of its own."""
    costs = simulation.DEFAULT_STAGE_COSTS
    scenario = simulation.production(10_000_000, costs=costs)
    pieces = simulation.snapshot_pieces(10_000_000, costs)
    dispatch = topology.function("dispatch")

    work_s = 10_000_000 * costs["snapshot_cpu_s_per_recipient"] / dispatch.vcpu
    assert work_s > dispatch.timeout_s  # too long for one invocation
    assert pieces == math.ceil(work_s / simulation.SNAPSHOT_PIECE_S) > 1
    assert dispatch.timeout_s / 2 > simulation.SNAPSHOT_PIECE_S  # a piece ends well within it
    assert scenario.first_page_at > work_s + pieces * simulation.BIGQUERY_QUERY_S
    assert scenario.snapshot_fixed_s == pytest.approx(
        costs["mirror_check_cpu_s"] + (1 + pieces) * simulation.BIGQUERY_QUERY_S
    )


def test_stage_costs_come_from_a_bench_run() -> None:
    operations = {
        "function.dispatch": {"operations": 4, "seconds": 2.0},
        "stage.mirror_check": {"operations": 1, "seconds": 0.1},
        "stage.snapshot": {"operations": 10_000, "seconds": 0.4},
        "function.render": {"operations": 40, "seconds": 4.0},
        "function.send": {"operations": 44, "seconds": 1.1},
        "pubsub.publish": {"operations": 100, "bytes": 20_000_000},
    }
    costs = simulation.stage_costs(operations, 10_000)
    assert costs == pytest.approx(
        {
            "dispatch_cpu_s_per_recipient": 1.5 / 10_000,  # dispatch's own: without the snapshot
            "mirror_check_cpu_s": 0.1,
            "snapshot_cpu_s_per_recipient": 0.4 / 10_000,
            "render_cpu_s_per_batch": 0.1,
            "send_cpu_s_per_batch": 0.025,
            "send_batches_per_render_batch": 1.1,
            "pubsub_bytes_per_email": 2000.0,
        }
    )


def test_dispatch_publishes_its_first_page_after_the_snapshot() -> None:
    """The snapshot's fixed part and its time per member (on dispatch's vCPUs) come before the
    first render batch; pacing counts from the first page."""
    scenario = burst(4, stage("render", instances=4), snapshot_fixed_s=2.0,
                     snapshot_s_per_recipient=0.001, dispatch_vcpu=0.5, start_s=0.5)  # fmt: skip
    result = simulate(scenario)
    assert result.seconds_to_first_page == pytest.approx(0.5 + 2.0 + 1000 * 0.001 / 0.5)
    assert result.seconds_to_send == pytest.approx(4.5, abs=0.05)
    paced = simulate(replace(scenario, pacing_per_s=100.0, page_size=250))
    assert paced.seconds_to_send == pytest.approx(4.5 + 750 / 100, abs=0.05)


def test_a_burst_after_the_snapshot_leaves_render_idle_between_backoffs() -> None:
    """What the snapshot changed: dispatch's time spent before the first page rather than
    between pages. Four batches published at once to a function that takes one at a time
    (1 s each), with a fixed 2 s backoff: the three refused together come back together, one
    rendered per 2 s (done 7 s after the burst). The same 3 s of dispatch spread over four
    pages (at 0.75, 1.5, 2.25, 3 s): the refused come due one by one and render idles less."""
    render = replace(stage("render", cpu_s=1.0), retry=RetryPolicy(2, 2, 100))
    at_once = simulate(burst(4, render, snapshot_fixed_s=3.0, page_size=250))
    assert at_once.seconds_to_send == pytest.approx(3.0 + 7.0, abs=0.01)
    assert at_once.refused_pushes["render"] == 3 + 2 + 1
    spread = simulate(burst(4, render, dispatch_s_per_recipient=0.75 / 250, page_size=250))
    assert spread.seconds_to_send == pytest.approx(6.0, abs=0.01)  # B2 and B4 refused once
    assert spread.refused_pushes["render"] == 2


def test_the_agreement_models_the_local_runs_snapshot_apart_from_its_pages() -> None:
    """A local run's dispatch wall time holds the mirror check and the snapshot; the model
    puts them (and the send request's preview) before the first page, and spreads only the
    rest over the pages."""
    operations = {
        "function.render": {"operations": 40, "seconds": 6.0},
        "function.send": {"operations": 44, "seconds": 1.5},
        "wall.render": {"operations": 40, "seconds": 8.0},
        "wall_squared.render": {"operations": 40, "seconds": 40 * (0.2**2 + 0.1**2)},
        "wall.send": {"operations": 44, "seconds": 2.2},
        "wall.dispatch": {"operations": 2, "seconds": 2.2},
        "wall.mirror_check": {"operations": 1, "seconds": 0.6},
        "wall.snapshot": {"operations": 10_000, "seconds": 0.5},
    }
    scenario = local_scenario(10_000, operations, preview_s=0.4)
    assert scenario.first_page_at == pytest.approx(0.4 + 0.6 + 0.5)
    assert scenario.dispatch_s_per_recipient == pytest.approx(1.1 / 10_000)
    assert scenario.render.cpu_s == pytest.approx(0.2)
    assert scenario.render.cpu_cv == pytest.approx(0.5)  # a standard deviation of 0.1 s
    assert scenario.send.cpu_cv == 0.0  # no squares metered: taken as constant


def test_invocation_times_vary_by_their_measured_spread_around_the_same_mean() -> None:
    """A varying stage takes the same CPU on average (a log-normal factor of mean 1), spread
    as said; the same seed gives the same run, another seed another."""
    steady = burst(500, stage("render", instances=500, cpu_s=0.2))
    varied = replace(steady, render=replace(steady.render, cpu_cv=0.5))
    sim = simulation.Simulation(varied)
    draws = [sim._variation(0.5) for _ in range(20_000)]
    assert statistics.mean(draws) == pytest.approx(1.0, abs=0.02)
    assert statistics.pstdev(draws) == pytest.approx(0.5, abs=0.03)
    assert simulate(steady).seconds_to_send == pytest.approx(0.2, abs=0.05)
    assert simulate(varied).seconds_to_send > 0.5  # the slowest of 500 draws
    assert simulate(varied).seconds_to_send == simulate(varied).seconds_to_send
    assert simulate(replace(varied, seed=1)).seconds_to_send != simulate(varied).seconds_to_send
