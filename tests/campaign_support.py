"""Helpers for the campaign tests: an audience in the store, and the local pipeline driven
in-process (the real bus, the real functions through functions-framework) until it is idle."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

from support import FakeClock, RecordingMailer

from shared import bootstrap, topology
from shared.adapters.local.sqlite_bus import Delivery
from shared.bootstrap import Container
from shared.domain.errors import TransientError
from shared.domain.messages import MARKETING, Recipient, RenderRequest, SendBatch
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.metering import OperationMeter
from shared.ports import OutboundMessage, Publisher
from shared.runner.functions_host import function_app, pusher
from shared.settings import Settings

# The warehouse first: subscribers added before a campaign starts reach the subscriber mirror
# (which the campaign's audience snapshot reads) before dispatch runs, as they would in a
# deployment where they were added more than a moment before.
PIPELINE = ("warehouse-on-analytics-events", "dispatch-on-campaign-dispatch",
            "render-on-render-requests", "send-on-send-requests",
            "preference-sync-on-subscriber-events")  # fmt: skip


def add_audience(
    container: Container,
    count: int,
    start: int = 0,
    make: Callable[[int], dict] | None = None,
    created_at: float = 1_700_000_000.0,
) -> list[Subscriber]:
    """`count` confirmed subscribers reader<i>@example.com (fields from `make(i)`)."""
    people = []
    for i in range(start, start + count):
        email = f"reader{i}@example.com"
        fields = {"first_name": f"Reader{i}", **(make(i) if make else {})}
        subscriber = Subscriber(id=container.subscribers.id_for(email), email=email,
                                status=CONFIRMED, created_at=created_at,
                                confirmed_at=created_at, **fields)  # fmt: skip
        people.append(subscriber)
    container.subscribers.create_many(people)  # as an import writes them: mirrored per commit
    mirror_now(container)
    return people


def mirror_now(container: Container) -> None:
    """Deliver the subscriber changes waiting for the warehouse function, so the subscriber
    mirror (which a campaign's audience snapshot reads) holds them, as it would a moment later
    in a deployment."""
    Pipeline(container, ["warehouse-on-analytics-events"]).drain()


class Pipeline:
    """Delivers bus messages to the functions, one subscription at a time, in this thread."""

    def __init__(self, container: Container, subscriptions: Iterable[str] = PIPELINE) -> None:
        self.container = container
        self.deliverers = {name: _deliverer(topology.subscription(name)) for name in subscriptions}

    def step(self, subscription: str, limit: int = 50) -> int:
        """Deliver what is due on one subscription; returns how many were delivered."""
        bus = self.container.bus
        deliveries: list[Delivery] = bus.pull(subscription, limit)
        for delivery in deliveries:
            if self.deliverers[subscription](delivery):
                bus.ack(subscription, delivery.message_id)
            else:
                bus.nack(subscription, delivery.message_id, "handler failed")
        return len(deliveries)

    def drain(self, timeout_s: float = 60.0, skip: Iterable[str] = ()) -> None:
        """Run until no subscription has anything ready, leased or in backoff."""
        deadline = time.monotonic() + timeout_s
        active = [s for s in self.deliverers if s not in set(skip)]
        while time.monotonic() < deadline:
            if sum(self.step(name) for name in active):
                continue
            depths = self.container.bus.depths()
            if all(depths[s]["ready"] + depths[s]["leased"] + depths[s]["backoff"] == 0
                   for s in active):  # fmt: skip
                return
            time.sleep(0.02)
        raise AssertionError(
            f"pipeline still busy after {timeout_s}s: {self.container.bus.depths()}"
        )

    def sweep(self) -> None:
        self.container.dispatch.handle({"kind": "sweep"})


def _deliverer(subscription: topology.Subscription) -> Callable[[Delivery], bool]:
    """What the runner's FunctionsHost does for one subscription: push the delivery into the
    function's functions-framework app; True when it answered 2xx."""
    push = pusher(function_app(topology.function(subscription.function)), subscription.topic)

    def deliver(delivery: Delivery) -> bool:
        return 200 <= push(delivery) < 300

    return deliver


def rendered_batch(container: Container, count: int, batch_id: str) -> SendBatch:
    """A real rendered batch of `count` new recipients of campaign-less marketing mail."""
    people = add_audience(container, count)
    request = RenderRequest(
        batch_id=batch_id,
        template="newsletter",
        kind=MARKETING,
        audience_at=container.clock(),
        recipients=[Recipient(p.id, p.email, p.first_name, {"attributes": {}}) for p in people],
    )
    compiled = container.templates.email("newsletter")
    emails = [container.renderer.render(compiled, request, r) for r in request.recipients]
    return SendBatch(request.batch_id, MARKETING, request.audience_at, emails)


class LostConfirmation:
    """The Publisher port as it behaves when the bus accepts a publish but the confirmation is
    lost (the port's documented TransientError): the first publish carrying a render batch
    whose id starts with `prefix` goes through, then raises. Records every batch id published."""

    def __init__(self, real: Publisher, prefix: str) -> None:
        self.real = real
        self.prefix = prefix
        self.tripped = False
        self.batch_ids: Counter[str] = Counter()

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        ids = self.real.publish(topic, messages)
        if topic != topology.RENDER_REQUESTS:
            return ids
        batches = [RenderRequest.decode(m.data).batch_id for m in messages]
        self.batch_ids.update(batches)
        if not self.tripped and any(b.startswith(self.prefix) for b in batches):
            self.tripped = True
            raise TransientError("publish sent, confirmation lost")
        return ids


def lose_a_confirmation(container: Container, prefix: str) -> LostConfirmation:
    """Put a LostConfirmation between the container's dispatch and its bus; returns it."""
    from shared.services.publishing import Outbox

    flaky = LostConfirmation(container.bus, prefix)
    container.__dict__["publisher"] = flaky
    container.__dict__["outbox"] = Outbox(flaky)
    for name in ("dispatcher", "dispatch", "campaign_service"):
        container.__dict__.pop(name, None)  # rebuilt on the outbox that loses a confirmation
    return flaky


def installed(
    local_settings: Settings, mailer: RecordingMailer, clock: FakeClock, **changes: object
) -> Iterator[Container]:
    """The reliability tests' `local` container, installed (settings changed by `changes`) until
    the generator is closed."""
    settings = replace(local_settings, campaign_page_size=100, campaign_pages_per_run=2,
                       campaign_gate_ttl_s=0.0, **changes)  # fmt: skip
    container = Container(settings, meter=OperationMeter(), clock=clock,
                          overrides={"mailer": mailer})  # fmt: skip
    bootstrap.install(container)
    yield container
    bootstrap.install(None)
