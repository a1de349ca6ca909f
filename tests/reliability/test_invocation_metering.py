"""What the runner's FunctionsHost meters per invocation for the fan-out simulation's local
stage costs (shared/bench/simulation_agreement.py): the CPU time, the wall time, and the wall
time's square, from which the simulation takes how much one invocation's time varies."""

from __future__ import annotations

import contextlib
import time

from support import RecordingMailer

from shared import bootstrap, topology
from shared.adapters.local.bus_worker import DeliveryRefused
from shared.bootstrap import Container
from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.metering import OperationMeter
from shared.runner.functions_host import FunctionsHost

RENDER = "render-on-render-requests"


def test_each_invocation_meters_its_wall_time_and_its_square(local_settings) -> None:
    container = Container(local_settings, overrides={"mailer": RecordingMailer()})
    bootstrap.install(container)
    try:
        requests = [RenderRequest(f"c:p:{i}", "no-such-template", MARKETING, time.time(),
                                  [Recipient("s1", "ann@example.com")], campaign_id="c").to_doc()
                    for i in range(2)]  # fmt: skip
        container.outbox.publish_json(topology.RENDER_REQUESTS, requests)
        meter = OperationMeter()
        deliver = FunctionsHost(meter).deliverer(topology.subscription(RENDER))
        for delivery in container.bus.pull(RENDER, 2):
            with contextlib.suppress(DeliveryRefused):  # no such template: metered all the same
                deliver(delivery)
        tallies = meter.snapshot()
        wall, squared = tallies["wall.render"], tallies["wall_squared.render"]
        assert wall.operations == squared.operations == tallies["function.render"].operations == 2
        # Two invocations: (a + b)^2 / 2 <= a^2 + b^2 <= (a + b)^2
        assert wall.seconds**2 / 2 <= squared.seconds <= wall.seconds**2
        assert squared.seconds > 0
    finally:
        bootstrap.install(None)
