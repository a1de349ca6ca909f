"""PubSubDeadLetters: the DeadLetters port over the dead-letter hold pull subscriptions.

Each push subscription forwards a message that exhausted its attempts to its dead-letter topic,
where the pull subscription `Subscription.dead_letter_subscription` keeps it (terraform/pubsub.tf).
Pub/Sub has no "browse", so every operation leases what the hold has (synchronous pull) and then
either acknowledges a message (replayed or purged: gone from the hold) or gives the lease back at
once (modify-ack-deadline 0), so nothing stays hidden from the next operator command.

- replay publishes data and attributes back to the subscription's ORIGINAL topic and only then
  acknowledges the dead letter; each topic has exactly one subscription in the topology, so the
  message reaches only that function again. Replaying twice requeues once: the second finds
  nothing to replay.
- `message_id` is the id Pub/Sub gave the copy on the dead-letter topic; `attempts` and
  `published_at` come from the attributes Pub/Sub adds when dead-lettering
  (CloudPubSubDeadLetterSource*), which are dropped before a replay. Pub/Sub does not record
  why the deliveries failed: `last_error` is empty (the function's logs have it).
- Pulls use return_immediately (deprecated for consumers, which should stream; right for an
  operator command, which must not wait on an empty hold). It may return fewer messages than
  are waiting: a count is then a lower bound and a replay may leave some behind (run it again).
"""

from __future__ import annotations

import builtins
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1

from shared import topology
from shared.adapters.gcp import clients
from shared.adapters.gcp.errors import translated
from shared.domain.errors import NotFound
from shared.metering import NULL_METER, OperationMeter
from shared.ports import DeadLetter, OutboundMessage, Publisher
from shared.settings import Settings
from shared.topology import Subscription

SOURCE_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetterSource"
_PULL_BATCH = 1000  # the most one Pull returns
_ACK_BATCH = 1000  # ack ids per Acknowledge / ModifyAckDeadline request


class PubSubDeadLetters:
    def __init__(
        self,
        subscriber: pubsub_v1.SubscriberClient,
        publisher: Publisher,
        project: str,
        meter: OperationMeter = NULL_METER,
        subscriptions: Sequence[Subscription] = topology.SUBSCRIPTIONS,
        max_messages: int = 10_000,
    ) -> None:
        self._subscriber = subscriber
        self._publisher = publisher
        self._project = project
        self._meter = meter
        self._subscriptions = {s.name: s for s in subscriptions}
        self._max_messages = max_messages

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        meter: OperationMeter = NULL_METER,
        publisher: Publisher | None = None,
    ) -> PubSubDeadLetters:
        if publisher is None:
            from shared.adapters.gcp.pubsub_publisher import PubSubPublisher

            publisher = PubSubPublisher.from_settings(settings, meter)
        return cls(clients.subscriber_client(settings), publisher, settings.gcp_project, meter)

    # -- the port ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Dead letters waiting, per subscription name (every subscription is listed)."""
        counts = {}
        for name in self._subscriptions:
            with self._leased(name) as (held, _settle):
                counts[name] = len(held)
        return counts

    def list(self, subscription: str, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters of one subscription (by when they were dead-lettered)."""
        with self._leased(subscription) as (held, _settle):
            letters = [_dead_letter(subscription, r) for r in held]
        letters.sort(key=lambda d: (d.dead_lettered_at, d.message_id))
        return letters[:limit]

    def replay(self, subscription: str, message_ids: Sequence[str] | None = None) -> int:
        """Publish the chosen dead letters to the subscription's topic, then acknowledge them."""
        topic = self._subscription(subscription).topic
        with self._leased(subscription) as (held, settle):
            chosen = _chosen(held, message_ids)
            if chosen:
                self._publisher.publish(topic, [_original(r.message) for r in chosen])
                settle(chosen)
        return len(chosen)

    def purge(self, subscription: str, message_ids: Sequence[str] | None = None) -> int:
        """Acknowledge the chosen dead letters: gone for good."""
        with self._leased(subscription) as (held, settle):
            chosen = _chosen(held, message_ids)
            settle(chosen)
        return len(chosen)

    # -- leasing -------------------------------------------------------------------------

    def _subscription(self, name: str) -> Subscription:
        try:
            return self._subscriptions[name]
        except KeyError:
            known = ", ".join(self._subscriptions)
            raise NotFound(f"no subscription {name!r}; known: {known}") from None

    def _hold_path(self, subscription: str) -> str:
        hold = self._subscription(subscription).dead_letter_subscription
        return f"projects/{self._project}/subscriptions/{hold}"

    @contextmanager
    def _leased(
        self, subscription: str
    ) -> Iterator[tuple[builtins.list[Any], Callable[[Sequence[Any]], None]]]:
        """Lease everything in the hold; yields (received messages, settle). `settle(received)`
        acknowledges those; whatever is not settled is released when the block ends, even on
        error."""
        path = self._hold_path(subscription)
        held = self._pull_all(path)
        unsettled = {r.ack_id for r in held}

        def settle(received: Sequence[Any]) -> None:
            ack_ids = [r.ack_id for r in received]
            for chunk in _chunks(ack_ids, _ACK_BATCH):
                with translated(f"acknowledge dead letters of {subscription}"):
                    self._subscriber.acknowledge(subscription=path, ack_ids=chunk)
                unsettled.difference_update(chunk)

        try:
            yield held, settle
        finally:
            self._release(path, sorted(unsettled))

    def _pull_all(self, path: str) -> builtins.list[Any]:
        held: builtins.list[Any] = []
        while len(held) < self._max_messages:
            with translated(f"pull {path}"), warnings.catch_warnings():
                warnings.filterwarnings("ignore", "The return_immediately", DeprecationWarning)
                response = self._subscriber.pull(
                    subscription=path, max_messages=_PULL_BATCH, return_immediately=True
                )
            if not response.received_messages:
                break
            for received in response.received_messages:
                self._meter.count("pubsub.delivery", 1, len(received.message.data))
                held.append(received)
        return held

    def _release(self, path: str, ack_ids: Sequence[str]) -> None:
        for chunk in _chunks(ack_ids, _ACK_BATCH):
            with translated(f"release leases on {path}"):
                self._subscriber.modify_ack_deadline(
                    subscription=path, ack_ids=chunk, ack_deadline_seconds=0
                )


def _chosen(held: Sequence[Any], message_ids: Sequence[str] | None) -> list[Any]:
    if message_ids is None:
        return list(held)
    wanted = set(message_ids)
    return [r for r in held if r.message.message_id in wanted]


def _original(message: Any) -> OutboundMessage:
    """The message as its producer published it: Pub/Sub's dead-letter attributes removed."""
    attributes = {
        k: v for k, v in message.attributes.items() if not k.startswith(SOURCE_ATTRIBUTE_PREFIX)
    }
    return OutboundMessage(bytes(message.data), attributes)


def _dead_letter(subscription: str, received: Any) -> DeadLetter:
    message = received.message
    source = dict(message.attributes)
    original = _original(message)
    return DeadLetter(
        message_id=message.message_id,
        subscription=subscription,
        data=original.data,
        attributes=dict(original.attributes),
        published_at=source.get(f"{SOURCE_ATTRIBUTE_PREFIX}TopicPublishTime", ""),
        dead_lettered_at=_rfc3339(message.publish_time),
        attempts=int(source.get(f"{SOURCE_ATTRIBUTE_PREFIX}DeliveryCount", "0") or 0),
        last_error="",
    )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
