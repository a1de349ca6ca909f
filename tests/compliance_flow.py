"""Moves messages through the local bus to the real functions, as the runner's workers do
(importable as `compliance_flow`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shared import topology
from shared.bootstrap import Container

Deliver = Callable[..., Any]

# Subscriptions in pipeline order: draining them in this order, repeatedly, settles everything.
PIPELINE = (
    "preference-sync-on-subscriber-events",
    "render-on-render-requests",
    "send-on-send-requests",
    "feedback-on-esp-feedback",
    "warehouse-on-analytics-events",
)


def drain(container: Container, deliver: Deliver, subscriptions: Sequence[str] = PIPELINE) -> int:
    """Deliver every due message of `subscriptions` to its function until all are idle;
    a function that answers non-2xx leaves its message for a retry (and fails the test)."""
    delivered = 0
    while True:
        progress = 0
        for name in subscriptions:
            function = topology.subscription(name).function
            for d in container.bus.pull(name, 50):
                response = deliver(function, d.data, d.attributes)
                assert response.status_code < 300, f"{function}: {response.status_code}"
                container.bus.ack(name, d.message_id)
                progress += 1
        delivered += progress
        if not progress:
            return delivered


def waiting(container: Container, subscription: str) -> int:
    """Messages waiting on a subscription (ready or leased)."""
    depth = container.bus.depths()[subscription]
    return int(depth["ready"]) + int(depth["leased"]) + int(depth["backoff"])
