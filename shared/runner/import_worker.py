"""A bus worker for the import function alone, in the calling process: what the CLI (and the
scale bench) runs while it follows an import locally. With `make run` up too that is a second
consumer, which is harmless: an import is one chain of steps, so the two only take turns."""

from __future__ import annotations

from typing import Any

from shared import topology
from shared.adapters.local.bus_worker import BusWorker
from shared.runner.functions_host import function_app, pusher


def start_import_worker(bus: Any, poll_interval_s: float = 0.02) -> BusWorker:
    """Started; `stop()` it when done (the step in progress finishes first)."""
    function = topology.function("imports")
    subscription = topology.subscriptions_of(topology.SUBSCRIBER_IMPORTS)[0]
    push = pusher(function_app(function), subscription.topic)
    worker = BusWorker(bus, subscription.name, lambda d: 200 <= push(d) < 300, batch=1,
                       poll_interval_s=poll_interval_s)  # fmt: skip
    worker.start()
    return worker
