"""A discrete-event simulation of a campaign's fan-out in GCP, for sizes this machine cannot run.

    python -m shared.bench.simulation [--recipients N] [--esp-rate R] [--pacing R] [--json]
    python -m shared.bench.simulation --agreement   # the local pipeline against the model

Modelled: dispatch first taking the campaign's audience snapshot (the mirror check, then the
members query's rows written as chunk files: nothing is published meanwhile), then walking it
page by page (one invocation at a time, handing over every `pages_per_run` pages, optionally
paced to a recipients-per-second rate) and publishing one render batch per `batch_size`
recipients; Pub/Sub push of every due message to its function; Cloud Run functions with
`max_instances` instances of `concurrency` requests each, a cold start for every new instance,
and the instance's vCPUs shared by its requests (each invocation's time drawn around its mean
when the stage says how much it varies, `cpu_cv`; constant otherwise, as in the production
figures); a push that finds the function full is answered 429, which Pub/Sub counts as a failed
attempt: it backs off (the subscription's policy) and is dead-lettered at `max_attempts`; the
email provider's rate limit, a token bucket every send batch waits its turn in.

Stage costs (CPU seconds per invocation, per snapshot member) are `make bench`'s, read from
var/bench.json (`stage_costs`) when it has them, otherwise the defaults below, recorded from
the last bench. Capacities and retry policies are shared/topology.py's; prices
shared/pricing.py's.

What it leaves out: Pub/Sub's own push flow control (it slows pushes to a failing endpoint, so
real 429s are fewer than here: the model errs on the side of dead letters), instances scaling
down (a campaign is shorter than Cloud Run's idle time), and the feedback and warehouse stages
(they take one message per send batch or provider event, far below their capacity).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared import topology
from shared.pricing import PRICES, PUBSUB_MIN_BYTES
from shared.services.audience_snapshot import SNAPSHOT_PIECE_S
from shared.topology import RetryPolicy

BENCH_JSON = Path("var/bench.json")
# Assumed: a new instance of a Python function with the google-cloud clients takes 3 s before
# it serves (Cloud Run's docs call cold starts "significant"; importing a function's module
# alone takes 0.5 s here, container start and the clients' first connections come on top).
COLD_START_S = 3.0
# Assumed: a BigQuery query job answers in about a second; taking a snapshot waits for two (the
# mirror check's count and the members query) besides its CPU, measured by the bench.
BIGQUERY_QUERY_S = 1.0
# Stage costs recorded from the last bench (a 20,000-recipient plain campaign, null provider,
# CPU seconds per invocation on one core of this machine); var/bench.json overrides them.
# Dispatch's CPU of that run (1.571 s on 2026-12-08, the snapshot's query answered by the
# warehouse process) in its parts: the snapshot's mirror check, its members read and written
# as chunk files, and the pages walked after it.
MIRROR_CHECK_CPU_S, SNAPSHOT_CPU_S = 0.192, 0.379
DISPATCH_PAGES_CPU_S = 1.571 - MIRROR_CHECK_CPU_S - SNAPSHOT_CPU_S
DEFAULT_STAGE_COSTS: dict[str, float] = {
    "dispatch_cpu_s_per_recipient": DISPATCH_PAGES_CPU_S / 20_000,
    "mirror_check_cpu_s": MIRROR_CHECK_CPU_S,
    "snapshot_cpu_s_per_recipient": SNAPSHOT_CPU_S / 20_000,
    "render_cpu_s_per_batch": 10.074 / 80,
    "send_cpu_s_per_batch": 2.065 / 88,
    "send_batches_per_render_batch": 88 / 80,
    "pubsub_bytes_per_email": 23_589_062 / 20_000,  # published (each is delivered once more)
}
ESP_RATE_PER_S = 1_000.0  # the provider account's send rate the figures assume
ESP_ROUND_TRIP_S = 0.2  # one provider API call per send batch
PAGE_READ_S = 0.05  # one audience page read (a store query) in dispatch


@dataclass(frozen=True)
class Stage:
    """One pushed function: its capacity, CPU, cost per invocation and retry policy."""

    name: str
    max_instances: int
    concurrency: int
    vcpu: float
    memory_mb: int
    cpu_s: float  # CPU seconds per invocation on one full vCPU
    wait_s: float  # per invocation, not on the CPU (store reads, publishes, round trips)
    retry: RetryPolicy
    cold_start_s: float = COLD_START_S
    # How much one invocation's time varies (standard deviation / mean; 0: every invocation
    # takes cpu_s). Each invocation then takes cpu_s times a log-normal factor of mean 1.
    cpu_cv: float = 0.0

    @property
    def capacity(self) -> int:
        return self.max_instances * self.concurrency

    @classmethod
    def of(cls, function: str, cpu_s: float, wait_s: float, cold_start_s: float) -> Stage:
        f = topology.function(function)
        (sub,) = [s for s in topology.SUBSCRIPTIONS if s.function == function]
        return cls(function, f.max_instances, f.concurrency, f.vcpu, f.memory_mb, cpu_s, wait_s,
                   sub.retry, cold_start_s)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    recipients: int
    render: Stage
    send: Stage
    esp_rate_per_s: float = ESP_RATE_PER_S  # 0: no limit
    pacing_per_s: float = 0.0  # dispatch publishes at most this many recipients/s; 0: unpaced
    batch_size: int = 250
    page_size: int = 500
    pages_per_run: int = 50
    dispatch_s_per_recipient: float = DEFAULT_STAGE_COSTS["dispatch_cpu_s_per_recipient"]
    dispatch_vcpu: float = topology.function("dispatch").vcpu
    page_read_s: float = PAGE_READ_S
    send_batches_per_render_batch: float = DEFAULT_STAGE_COSTS["send_batches_per_render_batch"]
    pubsub_bytes_per_email: float = DEFAULT_STAGE_COSTS["pubsub_bytes_per_email"]
    # Before dispatch publishes its first page: the send request's own work (the local run's
    # preview render), the snapshot's fixed part (mirror check, query latency) and its work per
    # member (on one vCPU). Zero for a campaign that walks the subscriber documents.
    start_s: float = 0.0
    snapshot_fixed_s: float = 0.0
    snapshot_s_per_recipient: float = 0.0
    seed: int = 0  # of the invocation times' variation (Stage.cpu_cv)

    @property
    def first_page_at(self) -> float:
        snapshot = self.recipients * self.snapshot_s_per_recipient / self.dispatch_vcpu
        return self.start_s + self.snapshot_fixed_s + snapshot


@dataclass
class _Instance:
    ready_at: float
    active: int = 0
    busy_since: float = 0.0
    busy_s: float = 0.0


@dataclass
class _Function:
    stage: Stage
    instances: list[_Instance] = field(default_factory=list)
    in_flight: int = 0
    refused: int = 0
    dead_letters: int = 0
    dead_lettered_recipients: int = 0
    invocations: int = 0

    def admit(self, now: float) -> _Instance | None:
        """The instance that takes a request now (a new one, cold, if all are full and the
        maximum allows); None when the function is at its capacity: a 429."""
        if self.in_flight >= self.stage.capacity:
            return None
        for instance in self.instances:
            if instance.active < self.stage.concurrency:
                return instance
        if len(self.instances) >= self.stage.max_instances:
            return None
        instance = _Instance(ready_at=now + self.stage.cold_start_s, busy_since=now)
        self.instances.append(instance)
        return instance


@dataclass
class Result:
    recipients: int
    minutes_to_send: float
    seconds_to_send: float
    seconds_to_first_page: float  # the snapshot (and the send request) before dispatch publishes
    dead_letters: int  # messages, as the bus and `mailpipe dlq` count them
    dead_lettered_recipients: int
    dead_letters_by_function: dict[str, int]
    peak_instances: int
    peak_instances_by_function: dict[str, int]
    refused_pushes: dict[str, int]
    invocations: dict[str, int]
    cost_usd: dict[str, float]


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    kind: str = field(compare=False)  # "push" or "done"
    function: str = field(compare=False)
    emails: int = field(compare=False)
    attempt: int = field(compare=False, default=0)
    instance: _Instance | None = field(compare=False, default=None)


class Simulation:
    """One campaign through dispatch -> render -> send; `run()` returns its figures."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.functions = {st.name: _Function(st) for st in (scenario.render, scenario.send)}
        self._events: list[_Event] = []
        self._seq = 0
        self._esp_free_at = 0.0
        self._sent = 0
        self._last_send_at = 0.0
        self._send_carry = 0.0  # fractional send batches per render batch
        self._rng = random.Random(scenario.seed)

    def _schedule(self, at: float, kind: str, function: str, emails: int, attempt: int = 0,
                  instance: _Instance | None = None) -> None:  # fmt: skip
        self._seq += 1
        heapq.heappush(self._events, _Event(at, self._seq, kind, function, emails, attempt,
                                            instance))  # fmt: skip

    def run(self) -> Result:
        for at, emails in self._dispatch():
            self._schedule(at, "push", "render", emails)
        while self._events:
            event = heapq.heappop(self._events)
            if event.kind == "push":
                self._push(event)
            else:
                self._done(event)
        return self._result()

    def _dispatch(self) -> Iterator[tuple[float, int]]:
        """(publish time, recipients) of every render batch: the snapshot first, then pages
        one after the other, each taking its read and its CPU, held back to the pacing rate
        (which starts with the first page, as dispatch's pacer does); hand-overs are
        immediate."""
        s = self.s
        page_s = s.page_read_s + s.page_size * s.dispatch_s_per_recipient / s.dispatch_vcpu
        first = now = s.first_page_at
        done = 0
        while done < s.recipients:
            page = min(s.page_size, s.recipients - done)
            now += page_s * page / s.page_size
            if s.pacing_per_s:
                now = max(now, first + done / s.pacing_per_s)
            for start in range(0, page, s.batch_size):
                yield now, min(s.batch_size, page - start)
            done += page

    def _push(self, event: _Event) -> None:
        function = self.functions[event.function]
        stage = function.stage
        attempt = event.attempt + 1
        instance = function.admit(event.at)
        if instance is None:  # 429: a failed attempt
            function.refused += 1
            if attempt >= stage.retry.max_attempts:
                function.dead_letters += 1
                function.dead_lettered_recipients += event.emails
            else:
                at = event.at + stage.retry.backoff(attempt)
                self._schedule(at, "push", event.function, event.emails, attempt)
            return
        if instance.active == 0:
            instance.busy_since = event.at
        instance.active += 1
        function.in_flight += 1
        function.invocations += 1
        start = max(event.at, instance.ready_at)
        share = max(1.0, instance.active / stage.vcpu)  # its requests share the vCPUs
        cpu_s = stage.cpu_s * self._variation(stage.cpu_cv)
        end = start + stage.wait_s + cpu_s / min(1.0, stage.vcpu) * share
        if event.function == "send" and self.s.esp_rate_per_s:
            self._esp_free_at = max(self._esp_free_at, start) + event.emails / self.s.esp_rate_per_s
            end = max(end, self._esp_free_at + ESP_ROUND_TRIP_S)
        self._schedule(end, "done", event.function, event.emails, attempt, instance)

    def _variation(self, cv: float) -> float:
        """A log-normal factor of mean 1 and coefficient of variation `cv` (1.0 for 0)."""
        if cv <= 0:
            return 1.0
        sigma = math.sqrt(math.log1p(cv * cv))
        return self._rng.lognormvariate(-sigma * sigma / 2, sigma)

    def _done(self, event: _Event) -> None:
        function = self.functions[event.function]
        instance = event.instance
        assert instance is not None
        instance.active -= 1
        function.in_flight -= 1
        if instance.active == 0:
            instance.busy_s += event.at - instance.busy_since
        if event.function == "render":
            for part in self._send_batches(event.emails):
                self._schedule(event.at, "push", "send", part)
        else:
            self._sent += event.emails
            self._last_send_at = max(self._last_send_at, event.at)

    def _send_batches(self, emails: int) -> list[int]:
        """A render batch becomes 1.1 send batches on average (split by size)."""
        self._send_carry += self.s.send_batches_per_render_batch
        parts = max(1, int(self._send_carry))
        self._send_carry -= parts
        base = emails // parts
        return [base + (1 if i < emails % parts else 0) for i in range(parts)]

    def _result(self) -> Result:
        dead = {name: f.dead_letters for name, f in self.functions.items()}
        peaks = {name: len(f.instances) for name, f in self.functions.items()}
        seconds = self._last_send_at
        return Result(
            recipients=self.s.recipients,
            minutes_to_send=round(seconds / 60, 1),
            seconds_to_send=round(seconds, 1),
            seconds_to_first_page=round(self.s.first_page_at, 1),
            dead_letters=sum(dead.values()),
            dead_lettered_recipients=sum(
                f.dead_lettered_recipients for f in self.functions.values()
            ),
            dead_letters_by_function=dead,
            peak_instances=sum(peaks.values()),
            peak_instances_by_function=peaks,
            refused_pushes={name: f.refused for name, f in self.functions.items()},
            invocations={name: f.invocations for name, f in self.functions.items()},
            cost_usd=self._cost(),
        )

    def _cost(self) -> dict[str, float]:
        """Dollars of the fan-out (functions' instance time, invocations, Pub/Sub bytes with
        every refused push billed again) for the campaign; and per million emails."""
        instance_s = gib_s = vcpu_s = 0.0
        invocations = 0
        for f in self.functions.values():
            busy = sum(i.busy_s + f.stage.cold_start_s for i in f.instances)
            instance_s += busy
            vcpu_s += busy * f.stage.vcpu
            gib_s += busy * f.stage.memory_mb / 1024
            invocations += f.invocations
        emails = max(1, self.s.recipients)
        per_batch = self.s.pubsub_bytes_per_email * self.s.batch_size / 2  # one message's bytes
        refused = sum(f.refused for f in self.functions.values())
        pubsub_bytes = 2 * self.s.pubsub_bytes_per_email * emails
        pubsub_bytes += refused * max(PUBSUB_MIN_BYTES, per_batch)
        dollars = {
            "functions_invocations": PRICES["functions.invocation"].usd * invocations,
            "functions_cpu": PRICES["functions.vcpu_second"].usd * vcpu_s,
            "functions_memory": PRICES["functions.gib_second"].usd * gib_s,
            "pubsub": PRICES["pubsub.byte"].usd * pubsub_bytes,
        }
        total = sum(dollars.values())
        return {
            **{k: round(v, 2) for k, v in dollars.items()},
            "total": round(total, 2),
            "per_million_emails": round(total * 1_000_000 / emails, 3),
        }


def stage_costs(operations: dict[str, dict[str, float]], emails: int) -> dict[str, float]:
    """The simulation's stage costs from a bench run's counted operations (for bench.json)."""

    def tally(name: str, field_name: str = "operations") -> float:
        return float(operations.get(name, {}).get(field_name, 0))

    render_n, send_n = tally("function.render"), tally("function.send")
    snapshot_s = tally("stage.snapshot", "seconds")
    check_s = tally("stage.mirror_check", "seconds")
    pages_s = tally("function.dispatch", "seconds") - snapshot_s - check_s  # dispatch's own
    return {
        "dispatch_cpu_s_per_recipient": max(0.0, pages_s) / emails,
        "mirror_check_cpu_s": check_s / max(1.0, tally("stage.mirror_check")),
        "snapshot_cpu_s_per_recipient": snapshot_s / max(1.0, tally("stage.snapshot")),
        "render_cpu_s_per_batch": tally("function.render", "seconds") / max(1.0, render_n),
        "send_cpu_s_per_batch": tally("function.send", "seconds") / max(1.0, send_n),
        "send_batches_per_render_batch": send_n / max(1.0, render_n),
        "pubsub_bytes_per_email": tally("pubsub.publish", "bytes") / emails,
    }


def measured_stage_costs(path: Path = BENCH_JSON) -> tuple[dict[str, float], str]:
    """Stage costs from `make bench`'s output when it has them, else the recorded defaults."""
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get("stage_costs")
    except (OSError, ValueError):
        found = None
    if isinstance(found, dict) and set(DEFAULT_STAGE_COSTS) <= set(found):
        return {k: float(found[k]) for k in DEFAULT_STAGE_COSTS}, str(path)
    return dict(DEFAULT_STAGE_COSTS), "defaults recorded from the last bench"


def production(
    recipients: int,
    esp_rate_per_s: float = ESP_RATE_PER_S,
    pacing_per_s: float | None = None,
    costs: dict[str, float] | None = None,
) -> Scenario:
    """The production topology; pacing defaults to the provider's rate (what
    MAILPIPE_CAMPAIGN_SEND_RATE_PER_S is set to)."""
    c = costs or measured_stage_costs()[0]
    return Scenario(
        recipients=recipients,
        render=Stage.of("render", c["render_cpu_s_per_batch"], 0.1, COLD_START_S),
        send=Stage.of("send", c["send_cpu_s_per_batch"], 0.0, COLD_START_S),
        esp_rate_per_s=esp_rate_per_s,
        pacing_per_s=esp_rate_per_s if pacing_per_s is None else pacing_per_s,
        dispatch_s_per_recipient=c["dispatch_cpu_s_per_recipient"],
        snapshot_fixed_s=snapshot_fixed_s(recipients, c),
        snapshot_s_per_recipient=c["snapshot_cpu_s_per_recipient"],
        send_batches_per_render_batch=c["send_batches_per_render_batch"],
        pubsub_bytes_per_email=c["pubsub_bytes_per_email"],
    )


def snapshot_pieces(recipients: int, costs: dict[str, float]) -> int:
    """Dispatch invocations the snapshot takes: one per SNAPSHOT_PIECE_S of its work."""
    work_s = recipients * costs["snapshot_cpu_s_per_recipient"] / topology.function("dispatch").vcpu
    return max(1, math.ceil(work_s / SNAPSHOT_PIECE_S))


def snapshot_fixed_s(recipients: int, costs: dict[str, float]) -> float:
    """The snapshot's time besides its work per member: the mirror check's, and a query job
    for the check and for each piece (each piece queries the members after the last)."""
    return costs["mirror_check_cpu_s"] + (1 + snapshot_pieces(recipients, costs)) * BIGQUERY_QUERY_S


def simulate(scenario: Scenario) -> Result:
    return Simulation(scenario).run()


def simulation_figures(recipients: int = 10_000_000, with_agreement: bool = True) -> dict[str, Any]:
    """`make bench-scale`'s `simulation` section: 10 M (and 1 M) recipients at the production
    settings, paced and unpaced, at the assumed provider rate; and the model against the local
    pipeline where both run (simulation_agreement.py, about a minute)."""
    costs, source = measured_stage_costs()
    paced = simulate(production(recipients, costs=costs))
    figures: dict[str, Any] = {
        "recipients": recipients,
        "minutes_to_send": paced.minutes_to_send,
        "seconds_to_first_page": paced.seconds_to_first_page,  # the snapshot
        "snapshot_invocations": snapshot_pieces(recipients, costs),  # each within SNAPSHOT_PIECE_S
        "dispatch_timeout_s": topology.function("dispatch").timeout_s,
        "dead_letters": paced.dead_letters,
        "dead_lettered_recipients": paced.dead_lettered_recipients,
        "peak_instances": paced.peak_instances,
        "peak_instances_by_function": paced.peak_instances_by_function,
        "refused_pushes": paced.refused_pushes,
        "fanout_cost_usd": paced.cost_usd,
        "esp_rate_per_s": ESP_RATE_PER_S,
        "pacing_per_s": ESP_RATE_PER_S,
        "cold_start_s": COLD_START_S,
        "stage_costs": costs,
        "stage_costs_from": source,
    }
    unpaced = simulate(production(recipients, pacing_per_s=0, costs=costs))
    figures["unpaced"] = _summary(unpaced)
    one_million = simulate(production(1_000_000, costs=costs))
    figures["one_million"] = _summary(one_million)
    figures["one_million_unpaced"] = _summary(
        simulate(production(1_000_000, pacing_per_s=0, costs=costs))
    )
    if with_agreement:
        from shared.bench.simulation_agreement import agreement

        figures["agreement_with_local_run"] = agreement()
    return figures


def _summary(result: Result) -> dict[str, Any]:
    keep = ("minutes_to_send", "seconds_to_first_page", "dead_letters",
            "dead_lettered_recipients", "peak_instances", "peak_instances_by_function",
            "refused_pushes", "cost_usd")  # fmt: skip
    return {k: v for k, v in asdict(result).items() if k in keep}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.bench.simulation", description=__doc__)
    parser.add_argument("--recipients", type=int, default=10_000_000)
    parser.add_argument("--esp-rate", type=float, default=ESP_RATE_PER_S)
    parser.add_argument(
        "--pacing",
        type=float,
        default=None,
        help="recipients/s dispatch publishes; default the ESP rate; 0 unpaced",
    )
    parser.add_argument(
        "--agreement", action="store_true", help="run the local pipeline and the model side by side"
    )
    parser.add_argument(
        "--figures", action="store_true", help="what make bench-scale writes under `simulation`"
    )
    args = parser.parse_args(argv)
    if args.figures:
        print(json.dumps(simulation_figures(args.recipients), indent=2))
        return
    if args.agreement:
        from shared.bench.simulation_agreement import agreement

        print(json.dumps(agreement(), indent=2))
        return
    scenario = production(args.recipients, args.esp_rate, args.pacing)
    print(json.dumps(asdict(simulate(scenario)), indent=2))


if __name__ == "__main__":
    main()
