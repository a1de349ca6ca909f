"""The local bus models Cloud Run's capacity: a due delivery that finds its function full (its
instances x concurrency, scaled) is refused as a 429 is, so it is a failed attempt that backs
off and dead-letters at the last, exactly like a nack. Time is a FakeClock; the pusher pulls
whatever is due, as Pub/Sub pushes every due message."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import topology
from shared.adapters.local.sqlite_bus import AT_CAPACITY, SqliteBus, scaled_capacities
from shared.metering import OperationMeter
from shared.ports import OutboundMessage
from shared.topology import RetryPolicy

RENDER = topology.subscription("render-on-render-requests")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def burst(bus: SqliteBus, size: int) -> None:
    bus.publish(RENDER.topic, [OutboundMessage(f"batch {i}".encode()) for i in range(size)])


def drain(bus: SqliteBus, clock: FakeClock, step_s: float = 1.0) -> list[tuple[str, int]]:
    """Push whatever is due, one pull per `step_s` of fake time, handling each delivery at once
    (acked with the next pull); until nothing is left. Returns (message id, attempt) handled."""
    handled: list[tuple[str, int]] = []
    acks: list[str] = []
    while True:
        deliveries = bus.pull(RENDER.name, 1000, ack=acks)
        handled += [(d.message_id, d.attempt) for d in deliveries]
        acks = [d.message_id for d in deliveries]
        depth = bus.depths()[RENDER.name]
        if not acks and not depth["ready"] + depth["backoff"] + depth["leased"]:
            return handled
        clock.now += step_s


def make_bus(tmp_path: Path, clock: FakeClock, capacity: int, attempts: int = 0) -> SqliteBus:
    override = RetryPolicy(10, 600, attempts) if attempts else None
    return SqliteBus(
        tmp_path / "bus.db",
        clock=clock,
        retry_override=override,
        capacities={RENDER.name: capacity},
        meter=OperationMeter(),
    )


def test_a_burst_beyond_capacity_with_too_few_attempts_dead_letters(tmp_path: Path) -> None:
    """Capacity 1, 10 messages at once, 5 attempts: one delivered per wave (backoffs 10, 20,
    40, 80 s), the five refused a fifth time are dead-lettered with the 429 as their error."""
    clock = FakeClock()
    bus = make_bus(tmp_path, clock, capacity=1, attempts=5)
    burst(bus, 10)
    handled = drain(bus, clock)
    assert [attempt for _, attempt in handled] == [1, 2, 3, 4, 5]
    dead = bus.list(RENDER.name)
    assert len(dead) == 5 and bus.counts()[RENDER.name] == 5
    assert {d.attempts for d in dead} == {5} and {d.last_error for d in dead} == {AT_CAPACITY}
    assert bus.replay(RENDER.name) == 5  # and the dead letters replay fine
    replayed = drain(bus, clock, step_s=10)
    assert sorted(m for m, _ in replayed) == sorted(d.message_id for d in dead)
    assert bus.counts()[RENDER.name] == 0
    delivered = [m for m, _ in handled + replayed]
    assert len(delivered) == len(set(delivered)) == 10  # each exactly once


def test_the_same_burst_at_the_production_settings_dead_letters_nothing(tmp_path: Path) -> None:
    """Render's own retry policy (20 attempts, backoff up to 600 s) outlasts the waves."""
    clock = FakeClock()
    bus = make_bus(tmp_path, clock, capacity=1)
    burst(bus, 10)
    handled = drain(bus, clock)
    assert [attempt for _, attempt in handled] == list(range(1, 11))
    assert bus.counts()[RENDER.name] == 0
    assert RENDER.retry.max_attempts >= 11


def test_deliveries_in_flight_fill_the_capacity(tmp_path: Path) -> None:
    """Leased and not yet acknowledged is in flight: a second puller gets nothing, and what is
    due meanwhile is refused; once acknowledged, the capacity is free again."""
    clock = FakeClock()
    bus = make_bus(tmp_path, clock, capacity=2)
    burst(bus, 3)
    first = bus.pull(RENDER.name, 2)
    assert len(first) == 2
    assert bus.pull(RENDER.name, 10) == []
    depth = bus.depths()[RENDER.name]
    assert (depth["leased"], depth["backoff"], depth["ready"]) == (2, 1, 0)
    clock.now += 10
    (third,) = bus.pull(RENDER.name, 10, ack=[d.message_id for d in first])
    assert third.attempt == 2


def test_a_refused_push_is_billed_like_a_delivery(tmp_path: Path) -> None:
    clock = FakeClock()
    meter = OperationMeter()
    bus = SqliteBus(tmp_path / "bus.db", clock=clock, capacities={RENDER.name: 1}, meter=meter)
    burst(bus, 3)
    bus.pull(RENDER.name, 10)
    tallies = meter.snapshot()
    assert tallies["pubsub.refused"].operations == 2
    assert tallies["pubsub.billable_bytes"].operations == 3 + 1 + 2  # publish, push, refused


def test_without_a_capacity_nothing_is_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    bus = SqliteBus(tmp_path / "bus.db", clock=clock)
    burst(bus, 50)
    assert len(bus.pull(RENDER.name, 1000)) == 50


@pytest.mark.parametrize(("scale", "expected"), [(1.0, 400), (0.01, 4), (0.0001, 1)])
def test_capacities_scale_the_topology(scale: float, expected: int) -> None:
    assert topology.function("render").capacity == 400
    assert scaled_capacities(scale)[RENDER.name] == expected
    assert scaled_capacities(0) == {}


def test_overflow_is_refused_when_due_not_when_a_worker_next_pulls(tmp_path: Path) -> None:
    """Pub/Sub pushes a message the moment it is due: while the one slot is busy, everything
    due is refused at once (refuse_overflow, which the runner calls every poll interval);
    with the slot free, one message is left for the worker to take."""
    clock = FakeClock()
    bus = make_bus(tmp_path, clock, capacity=1)
    burst(bus, 5)
    assert bus.refuse_overflow() == 4  # the slot is free: one waits for the worker
    (taken,) = bus.pull(RENDER.name, 10)
    assert taken.attempt == 1
    burst(bus, 2)
    assert bus.refuse_overflow() == 2  # the slot is busy
    assert bus.refuse_overflow() == 0  # nothing due beyond it any more
    depth = bus.depths()[RENDER.name]
    assert (depth["leased"], depth["backoff"], depth["ready"]) == (1, 6, 0)
