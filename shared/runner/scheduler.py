"""The local stand-in for Cloud Scheduler: publishes {"kind": "sweep"} to campaign-dispatch
(and, in a second instance, to behaviour-events for the trigger sweep).

In GCP a Cloud Scheduler job (terraform/scheduler.tf) publishes the same message every five
minutes; the sweep starts scheduled campaigns, decides A/B tests whose window is over and
restarts stalled dispatches. Locally this thread does it every `interval_s`, starting with one
sweep right away so a restarted runner picks up where a crashed one stopped.
"""

from __future__ import annotations

import json
import logging
import threading

from shared import topology
from shared.ports import OutboundMessage, Publisher

log = logging.getLogger(__name__)

SWEEP = json.dumps({"kind": "sweep"}).encode()


class Scheduler(threading.Thread):
    def __init__(
        self,
        publisher: Publisher,
        interval_s: float,
        stop_event: threading.Event,
        topic: str = topology.CAMPAIGN_DISPATCH,  # behaviour-events: the trigger sweep
    ) -> None:
        super().__init__(name=f"scheduler-{topic}", daemon=True)
        self._publisher = publisher
        self._topic = topic
        self._interval_s = interval_s
        self._stop_event = stop_event
        self.sweeps = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.tick()
            self._stop_event.wait(self._interval_s)

    def tick(self) -> None:
        """Publish one sweep; a failure is logged and the next tick tries again."""
        try:
            self._publisher.publish(self._topic, [OutboundMessage(SWEEP)])
            self.sweeps += 1
        except Exception:
            log.exception("could not publish the sweep to %s; trying again next tick", self._topic)
