"""BusWorker: one thread that drains one subscription of the SqliteBus into a callback.

The callback plays the part of Pub/Sub push: True acknowledges, False or any exception is a
failed delivery (nacked with the error text, so the bus backs off, then dead-letters).
Nothing a callback or the bus raises stops the thread; only the stop event does, and then
the delivery in progress finishes while the rest of the batch is handed back unprocessed.

Acknowledgements are written with the next pull, in the same transaction (or on their own
before the worker sleeps or stops): one bus write per batch instead of one per message. A
worker killed meanwhile leaves its last batch leased, so those messages are delivered again
when the leases run out: at least once, as always.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from shared.adapters.local.sqlite_bus import Delivery, SqliteBus

log = logging.getLogger(__name__)

Deliver = Callable[[Delivery], bool]


class DeliveryRefused(Exception):
    """A callback's way to fail a delivery with the handler's own error text (already logged
    by the handler), which the nack records and a dead letter shows."""


class BusWorker(threading.Thread):
    """Pulls batches of `batch` from `subscription_name` and delivers them one by one.

    All messages of a batch are leased together for the subscription's ack deadline, so
    `batch` times the slowest delivery should stay well below it, or messages at the end of
    the batch may be delivered twice (those finished are acknowledged at half the deadline).
    When nothing is due the worker sleeps `poll_interval_s` (that is the latency a new
    message may wait); it never sleeps while messages are due.
    """

    def __init__(
        self,
        bus: SqliteBus,
        subscription_name: str,
        deliver: Deliver,
        batch: int = 10,
        poll_interval_s: float = 0.05,
        stop_event: threading.Event | None = None,
    ) -> None:
        super().__init__(name=f"bus-worker-{subscription_name}", daemon=True)
        self.bus = bus
        self.subscription_name = subscription_name
        self._deliver = deliver
        self._batch = batch
        self._poll_interval_s = poll_interval_s
        self.stop_event = stop_event or threading.Event()
        self._ack_within_s = bus.ack_deadline_s(subscription_name) / 2

    def stop(self, timeout: float | None = None) -> None:
        """Ask the worker to stop and wait for it (the delivery in progress finishes)."""
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        acks: list[str] = []
        while not self.stop_event.is_set():
            deliveries = self._pull(acks)
            acks = []
            if deliveries:
                acks = self._handle(deliveries)
            else:
                self.stop_event.wait(self._poll_interval_s)
        self._flush(acks)

    def _pull(self, acks: list[str]) -> list[Delivery]:
        """The next batch, acknowledging `acks` in the same write; on failure nothing is
        acknowledged (the leases run out and the messages come back)."""
        try:
            return self.bus.pull(self.subscription_name, self._batch, ack=acks)
        except Exception:
            log.exception("pull from %s failed; retrying", self.subscription_name)
            return []

    def _handle(self, deliveries: Sequence[Delivery]) -> list[str]:
        """Deliver in order; returns the ids to acknowledge. Failures are nacked at once, and
        the acks so far are written at once when half the batch's lease has gone by (a slow
        batch must not let the leases of messages it finished run out)."""
        acks: list[str] = []
        pulled = time.monotonic()
        for index, delivery in enumerate(deliveries):
            if self.stop_event.is_set():
                self._flush(acks)
                self._release(deliveries[index:])
                return []
            error = self._attempt(delivery)
            if error is None:
                acks.append(delivery.message_id)
            else:
                self._nack(delivery, error)
            if acks and time.monotonic() - pulled > self._ack_within_s:
                self._flush(acks)
                acks = []
        return acks

    def _flush(self, acks: list[str]) -> None:
        if not acks:
            return
        try:
            self.bus.ack_many(self.subscription_name, acks)
        except Exception:
            log.exception("could not acknowledge %d on %s", len(acks), self.subscription_name)

    def _attempt(self, delivery: Delivery) -> str | None:
        """Run the callback; None on success, otherwise the error text to nack with."""
        try:
            if self._deliver(delivery):
                return None
            return "delivery was not acknowledged (the handler returned False)"
        except DeliveryRefused as exc:
            return str(exc)
        except Exception as exc:
            log.exception(
                "delivery of %s to %s failed (attempt %d)",
                delivery.message_id,
                delivery.subscription,
                delivery.attempt,
            )
            return f"{type(exc).__name__}: {exc}"

    def _nack(self, delivery: Delivery, error: str) -> None:
        # If this fails the lease simply runs out and the message comes back.
        try:
            self.bus.nack(delivery.subscription, delivery.message_id, error)
        except Exception:
            log.exception("could not nack %s on %s", delivery.message_id, delivery.subscription)

    def _release(self, deliveries: Sequence[Delivery]) -> None:
        try:
            self.bus.release(self.subscription_name, [d.message_id for d in deliveries])
        except Exception:
            log.exception("could not release leases on %s", self.subscription_name)


class OverflowRefuser(threading.Thread):
    """Plays Pub/Sub pushing every message the moment it is due: those beyond their function's
    capacity are refused then (SqliteBus.refuse_overflow), every `poll_interval_s`, rather
    than when a busy worker next pulls, so they back off from the same moment as in GCP."""

    def __init__(
        self,
        bus: SqliteBus,
        poll_interval_s: float = 0.05,
        stop_event: threading.Event | None = None,
    ) -> None:
        super().__init__(name="bus-overflow-refuser", daemon=True)
        self.bus = bus
        self._poll_interval_s = poll_interval_s
        self.stop_event = stop_event or threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self._poll_interval_s):
            try:
                self.bus.refuse_overflow()
            except Exception:
                log.exception("refusing deliveries beyond capacity failed; retrying")
