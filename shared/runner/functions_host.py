"""Hosts every Cloud Function of the topology in this process, as the platform would.

HTTP functions are functions-framework apps mounted under their route prefix; Pub/Sub-triggered
functions receive, through their own functions-framework app, the request Eventarc sends a
2nd-gen function for each Pub/Sub message: the `messagePublished` CloudEvent in binary content
mode (ce-* headers, the push subscription's JSON body as its data).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import flask
import functions_framework
from werkzeug.datastructures import Headers
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import EnvironBuilder, run_wsgi_app

from shared import topology
from shared.adapters.local.bus_worker import BusWorker, DeliveryRefused
from shared.adapters.local.sqlite_bus import Delivery, SqliteBus, event_headers, push_body
from shared.entrypoints.pubsub import take_failure
from shared.metering import NULL_METER, OperationMeter
from shared.runner.allocator import cap_malloc_arenas
from shared.settings import Settings

log = logging.getLogger(__name__)


def workers_for(subscription: topology.Subscription, send_workers: int) -> int:
    """Bus worker threads for a subscription: sending waits on the provider's network round
    trips, so it gets several (like concurrent requests to one function instance)."""
    return max(1, send_workers) if subscription.function == "send" else 1


HEAVY_FUNCTIONS = frozenset({"dispatch", "render", "send"})
# Bus workers hold a SQLite write lock across calls that release the GIL. With Python's default
# 5 ms switch interval a holder coming back from SQLite can wait that long for a rendering
# thread to yield, and every other writer waits behind it; at 1 ms the lock waits measured in a
# campaign fell by half or more, for a few more thread switches.
GIL_SWITCH_INTERVAL_S = 0.001


def prepare_bus_worker_host() -> float:
    """Tune this process to host bus workers: the GIL switch interval (see above) and two
    malloc arenas (see allocator.py); returns the switch interval it replaced."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    cap_malloc_arenas()  # before the worker threads start
    return previous


def batch_for(subscription: topology.Subscription, batch: int) -> int:
    """Messages a bus worker leases at a time: few for the stages whose every message is a
    batch of hundreds of emails, so that at the end of a campaign no process sits on leased
    work while another idles; `batch` for the rest."""
    return min(2, batch) if subscription.function in HEAVY_FUNCTIONS else batch


def function_app(function: topology.Function) -> flask.Flask:
    kind = "http" if function.is_http else "cloudevent"
    return functions_framework.create_app(function.entry_point, str(function.source), kind)


class FunctionsHost:
    def __init__(self, meter: OperationMeter = NULL_METER) -> None:
        self._meter = meter
        self.apps = {f.name: function_app(f) for f in topology.FUNCTIONS}

    def http_mounts(self) -> dict[str, Any]:
        return {f.route: self.apps[f.name] for f in topology.FUNCTIONS if f.is_http and f.route}

    def wsgi(self, root: flask.Flask, extra_mounts: dict[str, Any] | None = None) -> Any:
        mounts = {**self.http_mounts(), **(extra_mounts or {})}
        return DispatcherMiddleware(root, {p: _rooted(app) for p, app in mounts.items()})

    def bus_workers(
        self, bus: SqliteBus, settings: Settings, batch: int, stop_event: threading.Event
    ) -> list[BusWorker]:
        """Every Pub/Sub-triggered function's bus workers (not yet started)."""
        return [
            BusWorker(
                bus,
                subscription.name,
                self.deliverer(subscription),
                batch=batch_for(subscription, batch),
                poll_interval_s=settings.bus_poll_interval_s,
                stop_event=stop_event,
            )
            for subscription in topology.SUBSCRIPTIONS
            for _ in range(workers_for(subscription, settings.send_workers))
        ]

    def deliverer(self, subscription: topology.Subscription) -> Callable[[Delivery], bool]:
        """Push one delivery to the subscription's function; True when it answered 2xx,
        DeliveryRefused with the function's error otherwise (it ran in this thread)."""
        push = pusher(self.apps[subscription.function], subscription.topic)

        def deliver(delivery: Delivery) -> bool:
            started, wall = time.thread_time(), time.perf_counter()
            take_failure()  # nothing left over from an earlier delivery
            status = push(delivery)
            # CPU time of this invocation (the thread's), for pricing function compute; and
            # its wall time, waits included, for the simulation's local stage costs (with its
            # square, so the simulation knows how much one invocation's time varies).
            self._meter.count(
                f"function.{subscription.function}", 1, seconds=time.thread_time() - started
            )
            wall_s = time.perf_counter() - wall
            self._meter.count(f"wall.{subscription.function}", 1, seconds=wall_s)
            self._meter.count(f"wall_squared.{subscription.function}", 1, seconds=wall_s**2)
            if 200 <= status < 300:
                return True
            error = take_failure() or f"the function answered HTTP {status}"
            raise DeliveryRefused(error)

        return deliver


def pusher(app: Any, topic: str) -> Callable[[Delivery], int]:
    """POST a delivery of `topic` to a CloudEvent function's WSGI app as Eventarc would; the
    HTTP status it answered.

    The request goes straight into the app, as from an HTTP server: no test client, whose
    request object and environ refer to each other and so keep every request body alive until
    the cyclic garbage collector runs, several megabytes at a campaign's pace. Binary content
    mode matters for the same reason: given a bare push body, functions-framework first fails to
    parse a CloudEvent and keeps that exception, whose traceback holds the body, in a cycle.
    """

    def push(delivery: Delivery) -> int:
        environ = EnvironBuilder(
            method="POST",
            headers=Headers(event_headers(delivery, topic)),
            data=json.dumps(push_body(delivery)),
            content_type="application/json",
        ).get_environ()
        _, status, _ = run_wsgi_app(app, environ, buffered=True)
        return int(status.split(maxsplit=1)[0])

    return push


def _rooted(app: Any) -> Any:
    """`/signup` and `/signup/` are the same function root, as on a Cloud Functions URL."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return app(environ, start_response)

    return wsgi
