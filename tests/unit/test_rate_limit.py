"""The token bucket and the adaptive (AIMD) rate limiter, on a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from contract.fakes.clock import FakeClock

from shared.adapters.esp.chunk_results import THROTTLED_PREFIX
from shared.adapters.esp.rate_limit import RateLimitedMailer, TokenBucket
from shared.domain.errors import Throttled, TransientError
from shared.ports import OutgoingEmail, SendResult


def emails(n: int) -> list[OutgoingEmail]:
    return [
        OutgoingEmail(f"m{i}@t", "a@t", f"r{i}@t", "s", "<p>h</p>", "t", {}, b"raw", f"s{i}")
        for i in range(n)
    ]


class ScriptedMailer:
    """A Mailer that answers from a script: an exception to raise, "throttled" (the first
    message sent, the rest deferred), or "ok"; then "ok" forever. Records each call's time."""

    name = "scripted"

    def __init__(self, clock: FakeClock, script: Sequence[object] = ()) -> None:
        self.clock = clock
        self.script = list(script)
        self.calls: list[tuple[float, int]] = []

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.calls.append((self.clock(), len(batch)))
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        if step in ("deferred_all", "deferred_one"):  # 451 to every RCPT, or to the first
            deferred = batch if step == "deferred_all" else batch[:1]
            return [
                SendResult(e.message_id, "transient" if e in deferred else "sent",
                           detail="451 4.3.0 try again later")
                for e in batch
            ]  # fmt: skip
        if step == "throttled":
            first = SendResult(batch[0].message_id, "sent")
            rest = [
                SendResult(e.message_id, "transient", detail=THROTTLED_PREFIX + "421")
                for e in batch[1:]
            ]
            return [first, *rest]
        return [SendResult(e.message_id, "sent") for e in batch]


def limited(script: Sequence[object] = (), rate: float = 10.0, **options: float):
    clock = FakeClock()
    inner = ScriptedMailer(clock, script)
    mailer = RateLimitedMailer(inner, rate, clock, clock.sleep, **options)  # type: ignore[arg-type]
    return mailer, inner, clock


# --- token bucket --------------------------------------------------------------------------------
def test_bucket_allows_one_second_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock, clock.sleep)
    start = clock()
    for _ in range(30):
        bucket.acquire(1)
    # 10 free (the burst), then 20 more at 10/s
    assert clock() - start == pytest.approx(2.0)


def test_a_request_larger_than_the_burst_borrows_and_later_callers_repay() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock, clock.sleep)
    start = clock()
    bucket.acquire(50)  # bucket full: goes at once, 40 in debt
    assert clock() - start == 0
    bucket.acquire(1)  # waits for the debt plus its own token: 4.1 s
    assert clock() - start == pytest.approx(4.1)


def test_bucket_refills_while_idle_but_only_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5.0, clock, clock.sleep)
    for _ in range(5):
        bucket.acquire(1)
    clock.advance(100)
    start = clock()
    for _ in range(7):
        bucket.acquire(1)
    assert clock() - start == pytest.approx(2 / 5)


def test_bucket_hold_stops_everyone() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, clock, clock.sleep)
    bucket.hold(3.0)
    start = clock()
    bucket.acquire(1)
    assert 3.0 <= clock() - start <= 3.0 + 1 / 100


def test_bucket_never_hands_out_more_than_it_has_across_threads() -> None:
    """The clock never moves, so exactly the burst is granted without a wait, however threads
    interleave (a lost update would grant more)."""
    clock = FakeClock()

    class WouldBlock(Exception):
        pass

    def refuse(seconds: float) -> None:
        raise WouldBlock

    bucket = TokenBucket(100.0, clock, refuse)
    granted = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            try:
                bucket.acquire(1)
            except WouldBlock:
                return
            with lock:
                granted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 100


# --- the limiter ---------------------------------------------------------------------------------
def test_sends_at_the_configured_rate() -> None:
    mailer, inner, clock = limited(rate=10.0)
    for _ in range(10):
        assert [r.status for r in mailer.send(emails(5))] == ["sent"] * 5
    # 50 messages at 10/s with a 10-message burst
    assert clock() - 1000.0 == pytest.approx(4.0)
    assert len(inner.calls) == 10
    assert mailer.name == "scripted"


def test_throttled_halves_the_rate_waits_retry_after_and_retries_once() -> None:
    mailer, inner, _ = limited([Throttled("429", retry_after=2.0)], rate=10.0)
    results = mailer.send(emails(3))
    assert [r.status for r in results] == ["sent"] * 3
    assert len(inner.calls) == 2
    assert inner.calls[1][0] - inner.calls[0][0] >= 2.0, "waited Retry-After before retrying"
    assert mailer.rate < 10.0


def test_a_long_retry_after_is_raised_for_the_bus_without_waiting() -> None:
    mailer, inner, clock = limited([Throttled("429", retry_after=60.0)], rate=10.0, max_wait_s=10.0)
    before = clock()
    with pytest.raises(Throttled) as caught:
        mailer.send(emails(3))
    assert caught.value.retry_after == 60.0
    assert clock() == before, "no sleeping on a wait the bus does better"
    assert len(inner.calls) == 1
    assert mailer.rate == pytest.approx(5.0)


def test_throttled_twice_is_raised_after_one_retry() -> None:
    mailer, inner, _ = limited([Throttled("a", 1.5), Throttled("b", 1.5)], rate=10.0)
    with pytest.raises(Throttled, match="b"):
        mailer.send(emails(2))
    assert len(inner.calls) == 2
    assert mailer.rate == pytest.approx(2.5), "halved twice (the retry came 1.5 s later)"


def test_no_retry_after_waits_the_default() -> None:
    mailer, inner, _ = limited([Throttled("slow down")], rate=10.0, default_wait_s=0.7)
    mailer.send(emails(1))
    waited = inner.calls[1][0] - inner.calls[0][0]
    assert 0.7 <= waited <= 0.7 + 1 / 5.0, "the default wait, then a token at the halved rate"


def test_deferred_results_count_as_throttling() -> None:
    mailer, _, _ = limited(["throttled"], rate=10.0)
    results = mailer.send(emails(4))
    assert [r.status for r in results] == ["sent", "transient", "transient", "transient"]
    assert mailer.rate == pytest.approx(5.0)


def test_rate_recovers_additively_up_to_the_configured_rate() -> None:
    mailer, _, _ = limited([Throttled("x", 0.0)], rate=20.0, recovery_steps=4)
    mailer.send(emails(1))  # halved to 10, the retry succeeds: +5
    assert mailer.rate == pytest.approx(15.0)
    mailer.send(emails(1))
    assert mailer.rate == pytest.approx(20.0)
    mailer.send(emails(1))
    assert mailer.rate == pytest.approx(20.0), "never above the configured rate"


def test_rate_never_falls_below_the_floor() -> None:
    script = [Throttled("x", 100.0)] * 10
    mailer, _, clock = limited(script, rate=100.0, floor_fraction=0.1)
    for _ in range(10):
        clock.advance(2.0)  # beyond decrease_interval_s, so each one counts
        with pytest.raises(Throttled):
            mailer.send(emails(1))
    assert mailer.rate == pytest.approx(10.0)


def test_simultaneous_throttles_halve_once() -> None:
    mailer, _, _ = limited([Throttled("x", 100.0)] * 3, rate=40.0)
    for _ in range(3):  # the clock does not move: one burst of 429s
        with pytest.raises(Throttled):
            mailer.send(emails(1))
    assert mailer.rate == pytest.approx(20.0)


def test_other_errors_pass_through_untouched() -> None:
    mailer, inner, _ = limited([TransientError("down")], rate=10.0)
    with pytest.raises(TransientError, match="down"):
        mailer.send(emails(2))
    assert len(inner.calls) == 1
    assert mailer.rate == 10.0


def test_empty_chunk_costs_nothing() -> None:
    mailer, inner, _ = limited(rate=10.0)
    assert mailer.send([]) == []
    assert inner.calls == []


def test_a_server_deferring_every_message_is_throttling_and_the_rate_climbs_back() -> None:
    mailer, _, _ = limited(["deferred_all"], rate=20.0, recovery_steps=4)
    assert {r.status for r in mailer.send(emails(10))} == {"transient"}
    assert mailer.rate == pytest.approx(10.0)
    mailer.send(emails(10))
    mailer.send(emails(10))
    assert mailer.rate == pytest.approx(20.0), "back once the deferrals stop"


def test_one_recipient_deferred_does_not_slow_the_sender() -> None:
    mailer, _, _ = limited(["deferred_one", "deferred_one"], rate=20.0)
    mailer.send(emails(10))
    mailer.send(emails(3))
    assert mailer.rate == pytest.approx(20.0)
