"""RateLimitedMailer: any Mailer behind a token bucket whose rate adapts to the provider (AIMD).

- Token bucket: `rate` messages per second, bursts of one second's worth. A chunk larger than
  the burst goes once the bucket is full and borrows the rest (the balance goes negative and
  later callers wait it off), so any chunk size gets through at the average rate.
  Thread-safe: the lock covers only the arithmetic, never the sleep.
- Multiplicative decrease: when the provider throttles the whole sender (Throttled: SMTP 421,
  454 or a 4.7.0 rate or connection limit, HTTP 429, SES throttling; or results deferred as
  "throttled"), or defers every message of a chunk of at least `all_deferred_min` (a server
  deferring everything is throttling, whatever its code says), the rate halves, down to a
  floor of `floor_fraction` of the configured rate, at most once per `decrease_interval_s`
  (so that many threads throttled by the same burst halve it once, not once each). A deferral
  of single recipients (450/451 to one RCPT, greylisting) is not a throttle: those are
  retried per recipient by the send stage, and the rate stays.
- Additive increase: every chunk that goes through unthrottled raises the rate by
  1/`recovery_steps` of the configured rate, up to the configured rate.
- Retry-After: a Throttled whose retry_after (or `default_wait_s` when it gave none) fits in
  `max_wait_s` is waited out here, holding the whole bucket so other threads wait too, and
  the chunk is tried once more; a longer wait, or a second Throttled, is raised so that the
  bus redelivers the batch later instead of a function idling on the clock.

`clock` and `sleep` are injected so tests run on a fake clock that advances when slept on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from shared.adapters.esp.chunk_results import is_throttled
from shared.domain.errors import Throttled
from shared.ports import Mailer, OutgoingEmail, SendResult

# Messages per second when settings.esp_rate_per_s is 0: conservative starting points that
# a new account of each provider accepts (SES starts accounts at 14/s).
DEFAULT_RATE_PER_S: dict[str, float] = {
    "smtp": 20.0,
    "sendgrid": 300.0,
    "mailgun": 100.0,
    "ses": 14.0,
    "null": 100_000.0,
}


class TokenBucket:
    """Tokens are reserved under the lock and waited for outside it: a caller takes its tokens
    at once (the balance may go negative) and sleeps until the balance it took them from has
    refilled, so concurrent callers queue behind each other's debt without polling."""

    def __init__(
        self, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate = rate
        self._tokens = self.burst
        self._updated = clock()

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        """One second's worth, and at least one message."""
        return max(1.0, self._rate)

    def acquire(self, n: int) -> None:
        """Take `n` tokens, sleeping as long as the bucket requires. More than a burst is
        allowed once the bucket is full; the excess is repaid by later callers' waits."""
        with self._lock:
            self._refill()
            need = min(float(n), self.burst)
            wait = max(0.0, (need - self._tokens) / self._rate)
            self._tokens -= n
        if wait > 0:
            self._sleep(wait)

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._refill()
            self._rate = rate
            self._tokens = min(self._tokens, self.burst)

    def hold(self, seconds: float) -> None:
        """Nobody gets tokens for at least `seconds` (the provider asked us to wait)."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0.0) - seconds * self._rate

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self._rate)
        self._updated = now


class RateLimitedMailer:
    def __init__(
        self,
        inner: Mailer,
        rate_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        floor_fraction: float = 0.05,
        recovery_steps: int = 20,
        decrease_interval_s: float = 1.0,
        max_wait_s: float = 10.0,
        default_wait_s: float = 1.0,
        all_deferred_min: int = 5,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_rate = rate_per_s
        self._floor = rate_per_s * floor_fraction
        self._step = rate_per_s / recovery_steps
        self._decrease_interval = decrease_interval_s
        self._max_wait = max_wait_s
        self._default_wait = default_wait_s
        self._all_deferred_min = all_deferred_min
        self._clock = clock
        self._sleep = sleep
        self._bucket = TokenBucket(rate_per_s, clock, sleep)
        self._lock = threading.Lock()
        self._last_decrease = float("-inf")

    @property
    def rate(self) -> float:
        return self._bucket.rate

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        """The inner mailer's results, at the current rate. Raises Throttled when the provider
        still refuses after one wait, or asks for a longer wait than `max_wait_s`."""
        if not emails:
            return []
        self._bucket.acquire(len(emails))
        try:
            results = self.inner.send(emails)
        except Throttled as throttled:
            results = self._retry_once(emails, throttled)
        if self._throttled(results):
            self._slow_down()
        else:
            self._speed_up()
        return results

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def _throttled(self, results: Sequence[SendResult]) -> bool:
        if any(is_throttled(r) for r in results):
            return True
        everything_deferred = all(r.status == "transient" for r in results)
        return everything_deferred and len(results) >= self._all_deferred_min

    def _retry_once(
        self, emails: Sequence[OutgoingEmail], throttled: Throttled
    ) -> list[SendResult]:
        self._slow_down()
        wait = self._default_wait if throttled.retry_after is None else throttled.retry_after
        if wait > self._max_wait:
            raise throttled
        self._bucket.hold(wait)
        self._bucket.acquire(len(emails))
        try:
            return self.inner.send(emails)
        except Throttled:
            self._slow_down()
            raise

    def _slow_down(self) -> None:
        with self._lock:
            now = self._clock()
            if now - self._last_decrease < self._decrease_interval:
                return
            self._last_decrease = now
            self._bucket.set_rate(max(self._floor, self._bucket.rate / 2))

    def _speed_up(self) -> None:
        with self._lock:
            if self._bucket.rate < self.max_rate:
                self._bucket.set_rate(min(self.max_rate, self._bucket.rate + self._step))
