"""SqliteBus and BusWorker: Pub/Sub semantics on a real SQLite file.

Time is a FakeClock wherever the test is about backoff or leases; the worker, concurrency
and kill -9 tests run on real time and real processes.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import functions_framework
import pytest

from shared.adapters.local.bus_worker import BusWorker
from shared.adapters.local.sqlite_bus import Delivery, SqliteBus, push_body
from shared.domain.errors import InvalidInput, NotFound
from shared.metering import OperationMeter
from shared.ports import OutboundMessage
from shared.topology import REPO_ROOT, RetryPolicy, Subscription

HERE = Path(__file__).parent
POLICY = RetryPolicy(minimum_backoff_s=10, maximum_backoff_s=40, max_attempts=6)
AUDIT = Subscription("audit-on-orders", "orders", "audit", POLICY, ack_deadline_s=30)
MAIL = Subscription("mail-on-orders", "orders", "mail", POLICY, ack_deadline_s=30)
OTHER = Subscription("count-on-clicks", "clicks", "count", POLICY, ack_deadline_s=30)
SUBSCRIPTIONS = (AUDIT, MAIL, OTHER)
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus(tmp_path: Path, clock: FakeClock) -> SqliteBus:
    return SqliteBus(tmp_path / "bus.db", SUBSCRIPTIONS, clock=clock)


def messages(*payloads: str) -> list[OutboundMessage]:
    return [OutboundMessage(p.encode(), {"payload": p}) for p in payloads]


def pull_one(bus: SqliteBus, subscription: str = AUDIT.name) -> Delivery:
    (delivery,) = bus.pull(subscription, 10)
    return delivery


def fail_until_dead(bus: SqliteBus, clock: FakeClock, attempts: int, error: str) -> str:
    """Pull and nack the only message of AUDIT `attempts` times; returns its id."""
    for attempt in range(1, attempts + 1):
        delivery = pull_one(bus)
        assert delivery.attempt == attempt
        bus.nack(AUDIT.name, delivery.message_id, f"{error} #{attempt}")
        clock.advance(POLICY.maximum_backoff_s)
    return delivery.message_id


# -- publishing and fan-out ---------------------------------------------------------------


def test_publish_fans_out_to_every_subscription_of_the_topic(bus: SqliteBus) -> None:
    ids = bus.publish("orders", messages("a", "b", "c"))

    assert len(set(ids)) == 3 and ids == sorted(ids)
    for name in (AUDIT.name, MAIL.name):
        got = bus.pull(name, 10)
        assert [d.message_id for d in got] == ids
        assert [d.data for d in got] == [b"a", b"b", b"c"]
        assert [d.attributes for d in got] == [{"payload": p} for p in "abc"]
        assert all(d.attempt == 1 and d.subscription == name for d in got)
        assert all(RFC3339_Z.match(d.publish_time) for d in got)
    assert bus.pull(OTHER.name, 10) == []


def test_message_ids_stay_unique_across_topics_and_restarts(tmp_path: Path) -> None:
    first = SqliteBus(tmp_path / "bus.db", SUBSCRIPTIONS).publish("orders", messages("a", "b"))
    again = SqliteBus(tmp_path / "bus.db", SUBSCRIPTIONS)
    second = again.publish("clicks", messages("c")) + again.publish("orders", messages("d"))

    assert len(set(first + second)) == 4
    assert first + second == sorted(first + second)


def test_a_topic_without_subscriptions_keeps_nothing(tmp_path: Path, bus: SqliteBus) -> None:
    assert len(bus.publish("nowhere", messages("lost"))) == 1

    late = Subscription("late-on-nowhere", "nowhere", "late", POLICY)
    later_bus = SqliteBus(tmp_path / "bus.db", [late])
    assert later_bus.pull(late.name, 10) == []
    assert later_bus.depths()[late.name]["ready"] == 0


def test_dead_letter_topic_messages_wait_in_the_hold(bus: SqliteBus) -> None:
    (message_id,) = bus.publish(AUDIT.dead_letter_topic, messages("poison"))

    assert bus.counts() == {AUDIT.name: 1, MAIL.name: 0, OTHER.name: 0}
    (held,) = bus.list(AUDIT.name)
    assert (held.message_id, held.data, held.attempts) == (message_id, b"poison", 0)


def test_publish_refuses_messages_pubsub_would_refuse(bus: SqliteBus) -> None:
    with pytest.raises(InvalidInput):
        bus.publish("orders", [*messages("fine"), OutboundMessage(b"")])
    with pytest.raises(InvalidInput):
        bus.publish("orders", [OutboundMessage(b"x", {"n": 1})])  # type: ignore[dict-item]

    assert bus.pull(AUDIT.name, 10) == []


def test_unknown_subscriptions_are_not_found(bus: SqliteBus) -> None:
    with pytest.raises(NotFound):
        bus.pull("nope", 1)
    with pytest.raises(NotFound):
        bus.pull(AUDIT.dead_letter_subscription, 1)  # dead letters go through replay


# -- ack, nack, backoff, leases -----------------------------------------------------------


def test_pull_acknowledges_the_last_batch_in_the_same_write(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.publish("orders", messages("a", "b", "c"))
    first = bus.pull(AUDIT.name, 2)

    second = bus.pull(AUDIT.name, 2, ack=[d.message_id for d in first])

    assert [d.data for d in second] == [b"c"]
    clock.advance(AUDIT.ack_deadline_s + 1)  # only c's lease can run out: a and b are gone
    assert [(d.data, d.attempt) for d in bus.pull(AUDIT.name, 10)] == [(b"c", 2)]
    assert [d.data for d in bus.pull(MAIL.name, 10)] == [b"a", b"b", b"c"]  # other copies


def test_acks_given_to_pull_count_when_nothing_is_due(bus: SqliteBus) -> None:
    bus.publish("orders", messages("a", "b"))
    leased = bus.pull(AUDIT.name, 10)

    assert bus.pull(AUDIT.name, 10, ack=[leased[0].message_id]) == []
    assert bus.ack_many(AUDIT.name, [d.message_id for d in leased]) == 1  # a was acked above
    assert bus.depths()[AUDIT.name]["leased"] == 0
    assert bus.ack_many(AUDIT.name, []) == 0


def test_ack_removes_the_message_for_good(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("orders", messages("a"))
    delivery = pull_one(bus)

    assert bus.ack(AUDIT.name, delivery.message_id) is True
    clock.advance(AUDIT.ack_deadline_s + 1)
    assert bus.pull(AUDIT.name, 10) == []
    assert bus.ack(AUDIT.name, delivery.message_id) is False
    assert pull_one(bus, MAIL.name).message_id == delivery.message_id  # other copy untouched


def test_nack_backs_off_exponentially_between_min_and_max(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("orders", messages("flaky"))

    for attempt, backoff in enumerate([10, 20, 40, 40], start=1):
        delivery = pull_one(bus)
        assert delivery.attempt == attempt
        bus.nack(AUDIT.name, delivery.message_id, "try later")
        clock.advance(backoff - 0.01)
        assert bus.pull(AUDIT.name, 10) == []
        assert bus.depths()[AUDIT.name]["backoff"] == 1
        clock.advance(0.01)
    assert pull_one(bus).attempt == 5


def test_pull_serves_the_longest_due_first(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("orders", messages("retried"))
    clock.advance(1)
    bus.publish("orders", messages("waiting", "also-waiting"))
    bus.nack(AUDIT.name, bus.pull(AUDIT.name, 1)[0].message_id, "later")  # due at +11
    bus.release(AUDIT.name, [d.message_id for d in bus.pull(AUDIT.name, 10)])  # due at +1
    clock.advance(15)
    bus.publish("orders", messages("fresh"))

    got = [d.data for d in bus.pull(AUDIT.name, 10)]
    assert got == [b"waiting", b"also-waiting", b"retried", b"fresh"]


def test_retry_override_replaces_every_policy(tmp_path: Path, clock: FakeClock) -> None:
    quick = RetryPolicy(minimum_backoff_s=0.5, maximum_backoff_s=1, max_attempts=2)
    bus = SqliteBus(tmp_path / "bus.db", SUBSCRIPTIONS, clock=clock, retry_override=quick)
    bus.publish("orders", messages("x"))

    bus.nack(AUDIT.name, pull_one(bus).message_id, "first")
    clock.advance(0.5)
    bus.nack(AUDIT.name, pull_one(bus).message_id, "second")

    assert bus.counts()[AUDIT.name] == 1


def test_dead_letter_after_max_attempts_keeps_message_and_last_error(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.publish("orders", messages("poison"))
    message_id = fail_until_dead(bus, clock, POLICY.max_attempts, "boom")

    assert bus.pull(AUDIT.name, 10) == []
    assert bus.counts() == {AUDIT.name: 1, MAIL.name: 0, OTHER.name: 0}
    (dead,) = bus.list(AUDIT.name)
    assert dead.message_id == message_id and dead.subscription == AUDIT.name
    assert (dead.data, dict(dead.attributes)) == (b"poison", {"payload": "poison"})
    assert dead.attempts == POLICY.max_attempts
    assert dead.last_error == f"boom #{POLICY.max_attempts}"
    assert RFC3339_Z.match(dead.published_at) and RFC3339_Z.match(dead.dead_lettered_at)
    assert dead.dead_lettered_at > dead.published_at
    assert pull_one(bus, MAIL.name).attempt == 1  # the other subscription is unaffected


def test_replay_requeues_once_with_attempts_reset(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("orders", messages("poison"))
    message_id = fail_until_dead(bus, clock, POLICY.max_attempts, "boom")

    assert bus.replay(AUDIT.name, [message_id]) == 1
    assert bus.replay(AUDIT.name, [message_id]) == 0
    assert bus.counts()[AUDIT.name] == 0
    (delivery,) = bus.pull(AUDIT.name, 10)
    assert (delivery.message_id, delivery.attempt, delivery.data) == (message_id, 1, b"poison")
    assert bus.pull(AUDIT.name, 10) == []


def test_replay_all_and_purge(bus: SqliteBus) -> None:
    ids = bus.publish(AUDIT.dead_letter_topic, messages("a", "b", "c", "d"))

    assert bus.purge(AUDIT.name, [ids[0], "000000000999"]) == 1
    assert [d.message_id for d in bus.list(AUDIT.name, limit=2)] == ids[1:3]
    assert bus.replay(AUDIT.name, [ids[1]]) == 1
    assert bus.purge(AUDIT.name) == 2
    assert bus.replay(AUDIT.name) == 0
    assert [d.message_id for d in bus.pull(AUDIT.name, 10)] == [ids[1]]


def test_an_expired_lease_makes_the_message_deliverable_again(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.publish("orders", messages("a"))
    first = pull_one(bus)

    clock.advance(AUDIT.ack_deadline_s - 0.01)
    assert bus.pull(AUDIT.name, 10) == []
    clock.advance(0.01)
    second = pull_one(bus)
    assert (second.message_id, second.attempt) == (first.message_id, 2)

    bus.pull(AUDIT.name, 10, lease_s=0)  # nothing due: the lease above still holds
    clock.advance(AUDIT.ack_deadline_s)
    assert bus.pull(AUDIT.name, 10, lease_s=5)[0].attempt == 3
    clock.advance(5)
    assert pull_one(bus).attempt == 4


def test_a_message_whose_last_lease_expires_is_dead_lettered(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.publish("orders", messages("kills-its-worker"))
    for attempt in range(1, POLICY.max_attempts + 1):
        assert pull_one(bus).attempt == attempt
        clock.advance(AUDIT.ack_deadline_s)

    assert bus.pull(AUDIT.name, 10) == []
    (dead,) = bus.list(AUDIT.name)
    assert dead.attempts == POLICY.max_attempts
    assert "lease expired" in dead.last_error


def test_release_gives_leases_back_without_counting_an_attempt(bus: SqliteBus) -> None:
    bus.publish("orders", messages("a", "b"))
    leased = bus.pull(AUDIT.name, 10)

    assert bus.release(AUDIT.name, [leased[1].message_id]) == 1
    (again,) = bus.pull(AUDIT.name, 10)
    assert (again.message_id, again.attempt) == (leased[1].message_id, 1)


def test_two_threads_pulling_never_share_a_leased_message(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.db", SUBSCRIPTIONS)
    ids = bus.publish("orders", messages(*(f"m{i}" for i in range(1500))))
    received: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def drain(into: list[str]) -> None:
        start.wait()
        while batch := bus.pull(AUDIT.name, 7):
            into.extend(d.message_id for d in batch)

    threads = [threading.Thread(target=drain, args=(r,)) for r in received]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert not set(received[0]) & set(received[1])
    assert sorted(received[0] + received[1]) == ids


def test_depths_count_ready_leased_backoff_dead_and_oldest_age(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.publish("orders", messages("a", "b", "c", "d"))
    bus.publish(AUDIT.dead_letter_topic, messages("dead"))
    clock.advance(7)
    first, _second = bus.pull(AUDIT.name, 2)
    bus.nack(AUDIT.name, first.message_id, "later")

    depths = bus.depths()
    assert depths[AUDIT.name] == {
        "ready": 2,
        "leased": 1,
        "backoff": 1,
        "dead_lettered": 1,
        "oldest_age_s": 7.0,
    }
    assert depths[MAIL.name]["ready"] == 4
    assert depths[OTHER.name] == {
        "ready": 0,
        "leased": 0,
        "backoff": 0,
        "dead_lettered": 0,
        "oldest_age_s": 0.0,
    }


def test_meter_counts_publishes_and_deliveries_with_bytes(tmp_path: Path) -> None:
    meter = OperationMeter()
    bus = SqliteBus(tmp_path / "bus.db", SUBSCRIPTIONS, meter=meter)
    bus.publish("orders", messages("abc", "defgh"))
    bus.pull(AUDIT.name, 10)

    tallies = meter.snapshot()
    assert (tallies["pubsub.publish"].operations, tallies["pubsub.publish"].bytes) == (2, 8)
    assert (tallies["pubsub.delivery"].operations, tallies["pubsub.delivery"].bytes) == (2, 8)


# -- the worker ---------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_worker_acks_nacks_and_survives_exceptions(tmp_path: Path) -> None:
    quick = RetryPolicy(minimum_backoff_s=0.01, maximum_backoff_s=0.02, max_attempts=3)
    bus = SqliteBus(tmp_path / "bus.db", SUBSCRIPTIONS, retry_override=quick)
    done: list[tuple[str, int]] = []

    def deliver(delivery: Delivery) -> bool:
        if delivery.data == b"boom":
            raise RuntimeError("template exploded")
        if delivery.data == b"flaky" and delivery.attempt == 1:
            return False
        done.append((delivery.data.decode(), delivery.attempt))
        return True

    worker = BusWorker(bus, AUDIT.name, deliver, batch=2, poll_interval_s=0.01)
    worker.start()
    bus.publish("orders", messages("ok", "boom", "flaky", "fine"))
    try:
        wait_for(lambda: bus.counts()[AUDIT.name] == 1 and len(done) == 3)
        wait_for(lambda: bus.depths()[AUDIT.name]["leased"] == 0)
    finally:
        worker.stop(timeout=5)

    assert not worker.is_alive()
    assert sorted(done) == [("fine", 1), ("flaky", 2), ("ok", 1)]
    (dead,) = bus.list(AUDIT.name)
    assert (dead.data, dead.attempts) == (b"boom", 3)
    assert dead.last_error == "RuntimeError: template exploded"
    assert bus.depths()[AUDIT.name]["ready"] == 0


def test_stopping_the_worker_finishes_the_delivery_in_flight(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.db", SUBSCRIPTIONS)
    bus.publish("orders", messages("a", "b", "c"))
    started, proceed = threading.Event(), threading.Event()
    done: list[bytes] = []

    def deliver(delivery: Delivery) -> bool:
        started.set()
        proceed.wait(10)
        done.append(delivery.data)
        return True

    stop = threading.Event()
    worker = BusWorker(bus, AUDIT.name, deliver, batch=3, stop_event=stop)
    worker.start()
    assert started.wait(10)
    stop.set()
    proceed.set()
    worker.join(10)

    assert not worker.is_alive()
    assert done == [b"a"]
    assert bus.depths()[AUDIT.name] | {"oldest_age_s": 0} == {
        "ready": 2,
        "leased": 0,
        "backoff": 0,
        "dead_lettered": 0,
        "oldest_age_s": 0,
    }
    assert [(d.data, d.attempt) for d in bus.pull(AUDIT.name, 10)] == [(b"b", 1), (b"c", 1)]


# -- kill -9 ------------------------------------------------------------------------------


def log_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_kill_9_mid_publish_and_consume_loses_nothing(tmp_path: Path) -> None:
    child_script = str(HERE / "bus_child.py")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen([sys.executable, child_script, "run", str(tmp_path)], env=env)
    try:
        wait_for(
            lambda: (
                child.poll() is None
                and len(log_lines(tmp_path / "published.log")) >= 3000
                and len(log_lines(tmp_path / "delivered-run.log")) >= 200
            ),
            timeout=20,
        )
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL

    drain = subprocess.run(
        [sys.executable, child_script, "drain", str(tmp_path)], env=env, timeout=60
    )

    assert drain.returncode == 0
    published = set(log_lines(tmp_path / "published.log"))
    after_kill = set(log_lines(tmp_path / "delivered-drain.log"))
    delivered = set(log_lines(tmp_path / "delivered-run.log")) | after_kill
    assert after_kill, "the kill left no backlog, so the restart proved nothing"
    assert published <= delivered
    # Payloads are numbered in publish order and a publish commits all or nothing, so
    # whatever was committed, logged or not, is a gap-free prefix.
    indices = sorted(int(p[1:]) for p in delivered)
    assert indices == list(range(len(indices)))


# -- push bodies and functions-framework --------------------------------------------------


def test_push_body_is_what_a_pubsub_push_subscription_posts(bus: SqliteBus) -> None:
    (message_id,) = bus.publish("orders", [OutboundMessage(b"\x00hi", {"kind": "x"})])
    delivery = pull_one(bus)

    assert push_body(delivery) == {
        "message": {
            "data": base64.b64encode(b"\x00hi").decode(),
            "attributes": {"kind": "x"},
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": delivery.publish_time,
            "publish_time": delivery.publish_time,
        },
        "subscription": f"projects/local/subscriptions/{AUDIT.name}",
        "deliveryAttempt": 1,
    }
    assert bus.push_body(delivery) == push_body(delivery)


def test_functions_framework_turns_a_push_body_into_a_pubsub_cloudevent(
    bus: SqliteBus,
) -> None:
    (message_id,) = bus.publish("orders", [OutboundMessage(b'{"n": 1}', {"kind": "order"})])
    delivery = pull_one(bus)
    source = HERE / "fixtures" / "pubsub_recorder.py"
    client = functions_framework.create_app("record", str(source), "cloudevent").test_client()
    received = sys.modules["pubsub_recorder"].RECEIVED

    response = client.post("/projects/local/topics/orders", json=push_body(delivery))

    assert response.status_code == 200, response.get_data(as_text=True)
    event = received[-1]
    assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["source"] == "//pubsub.googleapis.com/projects/local/topics/orders"
    assert (event["id"], event["time"]) == (message_id, delivery.publish_time)
    message = event.data["message"]
    assert base64.b64decode(message["data"]) == b'{"n": 1}'
    assert message["attributes"] == {"kind": "order"}
    assert (message["messageId"], message["publishTime"]) == (message_id, delivery.publish_time)


def test_a_slow_batch_acknowledges_what_it_finished_before_its_leases_run_out(
    tmp_path: Path,
) -> None:
    """Three 0.4 s deliveries under a 1 s lease: the first two are acknowledged at half the
    lease, so a second worker taking over the lapsed leases gets only the third again."""
    slow = Subscription("slow-on-orders", "orders", "audit", POLICY, ack_deadline_s=1)
    bus = SqliteBus(tmp_path / "bus.db", [slow])
    bus.publish("orders", messages("a", "b", "c"))
    delivered: list[bytes] = []

    def deliver(delivery: Delivery) -> bool:
        delivered.append(delivery.data)
        time.sleep(0.4)
        return True

    first = BusWorker(bus, slow.name, deliver, batch=3, poll_interval_s=0.01)
    first.start()
    wait_for(lambda: len(delivered) == 1)
    second = BusWorker(bus, slow.name, deliver, batch=3, poll_interval_s=0.01)
    second.start()
    try:
        wait_for(lambda: bus.depths()[slow.name]["ready"] + bus.depths()[slow.name]["leased"] == 0)
    finally:
        first.stop(timeout=5)
        second.stop(timeout=5)
    assert delivered.count(b"a") == 1 and delivered.count(b"b") == 1
    assert b"c" in delivered
