"""The simulation against the real local pipeline, where both can run.

A plain campaign to `audience` recipients (null provider) runs through the local runner (one
worker process: the bus, every function, the real SQLite stores) with the bus capacities scaled
down by AGREEMENT_SCALE, so that render takes one batch at a time and the burst dispatch
publishes is refused, backed off and retried as in GCP, with the backoff scaled to 1..2 s. The
simulation then runs the same campaign with the same capacities, retry policies and backoff and
that run's own stage costs, and the two are compared: the mean time to send of RUNS runs within
AGREEMENT_TOLERANCE, dead letters equal. `python -m shared.bench.simulation --agreement` runs
it alone; `make bench-scale` runs it with the simulation's figures.

Stage costs are this run's wall time per invocation (one process has one GIL: a function's wall
time includes its turns waiting for the others), and so are the parts before dispatch's first
page: the send request's preview render, the audience snapshot's mirror check and its time per
member; and how much an invocation's time varies (from the squares of the wall times), so each
run is modelled SEEDS times with its own draws and the model's mean is compared. They matter:
dispatch publishes its pages in a burst after the snapshot, and with render taking one batch at
a time the burst's span decides how much of each backoff period render idles (a model that
spread dispatch's whole wall time over the pages, as it did when dispatch read the subscriber
documents page by page, took 9-13 s where the runner took 19-25 s).
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared import topology
from shared.adapters.local.sqlite_bus import scaled_capacities
from shared.bench import campaign_bench
from shared.bench.simulation import Result, Scenario, Stage, simulate
from shared.bootstrap import Container
from shared.metering import OperationMeter
from shared.runner.local_runner import LocalRunner
from shared.settings import Settings
from shared.topology import REPO_ROOT, RetryPolicy

AGREEMENT_SCALE = 1 / 400  # render's 100 x 4 becomes 1; send's 50 x 16 becomes 2
MIN_BACKOFF_S, MAX_BACKOFF_S = 1.0, 2.0
AGREEMENT_TOLERANCE = 0.3  # |simulated - measured| / measured, of the means of RUNS runs
AUDIENCE = 10_000
RUNS = 3
SEEDS = 20  # modelled runs per local run, each with its own draw of invocation times
TIMEOUT_S = 600


def run_local(audience: int) -> dict[str, Any]:
    """The campaign through the local runner; its time to send, dead letters and operations."""
    data_dir = Path(tempfile.mkdtemp(prefix="mailpipe-agreement-"))
    settings = Settings(
        data_dir=data_dir, template_root=REPO_ROOT / "templates",
        port=campaign_bench.free_port(), smtp_port=campaign_bench.free_port(), esp="null",
        worker_processes=1, send_workers=1, bus_capacity_scale=AGREEMENT_SCALE,
        bus_min_backoff_s=MIN_BACKOFF_S, bus_max_backoff_s=MAX_BACKOFF_S,
        bus_poll_interval_s=0.02, scheduler_interval_s=600.0, esp_rate_per_s=1_000_000,
        log_level="WARNING",
    )  # fmt: skip
    container = Container(settings, meter=OperationMeter())
    campaign_bench.seed(container, audience)
    container.meter.reset()
    runner = LocalRunner(container, with_smtp_sink=False).start()
    try:
        campaign = container.campaign_service.create(
            {"id": "agreement", "name": "Agreement", "template": "newsletter"}
        )
        started = time.perf_counter()
        container.campaign_service.send_now(campaign.id)
        preview = time.perf_counter() - started
        watcher = Container(settings)
        elapsed = _until_sent(watcher, campaign.id, started)
        dead = sum(watcher.bus.counts().values())
    finally:
        runner.stop()
    operations = campaign_bench._operations(container.meter, data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    return {"seconds_to_send": round(elapsed, 1), "dead_letters": dead, "operations": operations,
            "preview_s": preview}  # fmt: skip


def _until_sent(watcher: Container, campaign_id: str, started: float) -> float:
    """Seconds until nothing of the campaign is left to render or send, nor waiting for a
    retry (a dead-lettered batch ends too: it waits in its hold)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if campaign_bench._sending_over(watcher, campaign_id):
            return time.perf_counter() - started
        time.sleep(0.1)
    raise TimeoutError(f"the agreement campaign was not sent within {TIMEOUT_S} s")


def local_scenario(
    audience: int, operations: dict[str, dict[str, float]], preview_s: float = 0.0
) -> Scenario:
    """The local run as the simulation sees it: scaled capacities, scaled backoff, no cold
    starts, no provider limit, this run's wall time per invocation, per snapshot member and
    before dispatch (`preview_s`)."""

    def tally(name: str, field: str = "operations") -> float:
        return float(operations.get(name, {}).get(field, 0.0))

    capacities = scaled_capacities(AGREEMENT_SCALE)
    render_n = max(1.0, tally("function.render"))
    check_s, snapshot_s = tally("wall.mirror_check", "seconds"), tally("wall.snapshot", "seconds")
    pages_s = tally("wall.dispatch", "seconds") - check_s - snapshot_s  # dispatch's own part

    def local_stage(function: str) -> Stage:
        (sub,) = topology.subscriptions_of(topology.function(function).trigger_topic or "")
        retry = RetryPolicy(MIN_BACKOFF_S, MAX_BACKOFF_S, sub.retry.max_attempts)
        n = max(1.0, tally(f"wall.{function}"))
        mean = tally(f"wall.{function}", "seconds") / n
        variance = tally(f"wall_squared.{function}", "seconds") / n - mean * mean
        cv = math.sqrt(max(0.0, variance)) / mean if mean > 0 else 0.0
        return Stage(function, capacities[sub.name], 1, 1.0, 512, mean, 0.0, retry, 0.0, cv)

    return Scenario(
        recipients=audience,
        render=local_stage("render"),
        send=local_stage("send"),
        esp_rate_per_s=0.0,
        pacing_per_s=0.0,
        page_read_s=0.0,
        dispatch_s_per_recipient=max(0.0, pages_s) / audience,
        dispatch_vcpu=1.0,
        send_batches_per_render_batch=tally("function.send") / render_n,
        start_s=preview_s,
        snapshot_fixed_s=check_s,
        snapshot_s_per_recipient=snapshot_s / max(1.0, tally("wall.snapshot")),
    )


def agreement(audience: int = AUDIENCE, runs: int = RUNS) -> dict[str, Any]:
    """`runs` local runs, each simulated with its own stage costs (SEEDS times, drawing the
    invocation times with the run's own spread); the means are compared (one run's time to
    send varies by a quarter: who gets the free slot in each wave of retries depends on
    timing to the millisecond, here as in GCP)."""
    pairs = []
    for _ in range(runs):
        local = run_local(audience)
        simulated = modelled(local_scenario(audience, local["operations"], local["preview_s"]))
        pairs.append((local, simulated))
    measured = statistics.mean(local["seconds_to_send"] for local, _ in pairs)
    expected = statistics.mean(sim.seconds_to_send for _, sim in pairs)
    local_dead = [local["dead_letters"] for local, _ in pairs]
    sim_dead = [sim.dead_letters for _, sim in pairs]
    deviation = abs(expected - measured) / measured
    return {
        "audience": audience,
        "scale": AGREEMENT_SCALE,
        "backoff_s": [MIN_BACKOFF_S, MAX_BACKOFF_S],
        "runs": [_pair(local, sim) for local, sim in pairs],
        "local_seconds_to_send": round(measured, 1),
        "simulated_seconds_to_send": round(expected, 1),
        "local_dead_letters": local_dead,
        "simulated_dead_letters": sim_dead,
        "deviation": round(deviation, 3),
        "tolerance": AGREEMENT_TOLERANCE,
        "agrees": deviation <= AGREEMENT_TOLERANCE and local_dead == sim_dead,
    }


def modelled(scenario: Scenario, seeds: int = SEEDS) -> Result:
    """The model's expectation for a scenario whose invocation times vary: the mean time to
    send and the mean refusals of `seeds` runs, each with its own draw; the dead letters of
    the worst."""
    results = [simulate(replace(scenario, seed=seed)) for seed in range(seeds)]
    seconds = statistics.mean(r.seconds_to_send for r in results)
    refused = {name: round(statistics.mean(r.refused_pushes[name] for r in results))
               for name in results[0].refused_pushes}  # fmt: skip
    worst = max(results, key=lambda r: r.dead_letters)
    return replace(worst, seconds_to_send=round(seconds, 1), minutes_to_send=round(seconds / 60, 1),
                   refused_pushes=refused)  # fmt: skip


def _pair(local: dict[str, Any], simulated: Result) -> dict[str, Any]:
    prefix = "pubsub.refused."
    refused = {k.removeprefix(prefix): v["operations"]
               for k, v in local["operations"].items() if k.startswith(prefix)}  # fmt: skip
    wall = {k.removeprefix("wall."): round(v["seconds"], 2)
            for k, v in local["operations"].items() if k.startswith("wall.")}  # fmt: skip
    return {
        "local": {"seconds_to_send": local["seconds_to_send"],
                  "dead_letters": local["dead_letters"], "refused_pushes": refused,
                  "preview_s": round(local["preview_s"], 2), "wall_s": wall},
        "simulated": {"seconds_to_send": simulated.seconds_to_send,
                      "seconds_to_first_page": simulated.seconds_to_first_page,
                      "dead_letters": simulated.dead_letters,
                      "refused_pushes": simulated.refused_pushes},
    }  # fmt: skip
