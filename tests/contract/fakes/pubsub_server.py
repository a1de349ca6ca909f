"""FakePubSub: the Pub/Sub REST API (v1) as google-cloud-pubsub's REST transport calls it.

Topics and subscriptions are the topology's (shared/topology.py), as Terraform creates them:
every work topic with its push subscription, every dead-letter topic with its "-hold" pull
subscription. Implemented: topics.publish, subscriptions.pull / acknowledge /
modifyAckDeadline, with leases like Pub/Sub's (a pulled message is invisible until acked, its
deadline ends, or modifyAckDeadline 0 releases it). Every request body is checked against the
API's JSON shape.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from contract.fakes.recording_server import RecordingServer, Reply, error_reply, expect

from shared import topology

_PUBLISH_KEYS = {"data", "attributes", "orderingKey"}
_MAX_MESSAGES_PER_PUBLISH = 1000


@dataclass
class Stored:
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: str
    ack_id: str = ""
    leased_until: float = 0.0


@dataclass
class _Subscription:
    topic: str
    ack_deadline_s: int
    messages: list[Stored] = field(default_factory=list)


class FakePubSub(RecordingServer):
    def __init__(self, project: str) -> None:
        super().__init__()
        self.project = project
        self.published: dict[str, list[Stored]] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._ids = itertools.count(1)
        for sub in topology.SUBSCRIPTIONS:
            self._subscriptions[sub.name] = _Subscription(sub.topic, sub.ack_deadline_s)
            hold = _Subscription(sub.dead_letter_topic, 600)
            self._subscriptions[sub.dead_letter_subscription] = hold
        topics = {*topology.TOPICS, *topology.dead_letter_topics()}
        self.published = {t: [] for t in topics}
        prefix = r"/v1/projects/(?P<project>[^/]+)"
        self.route("POST", prefix + r"/topics/(?P<topic>[^/:]+):publish", self._publish)
        subscription = prefix + r"/subscriptions/(?P<name>[^/:]+)"
        self.route("POST", subscription + ":pull", self._pull)
        self.route("POST", subscription + ":acknowledge", self._acknowledge)
        self.route("POST", subscription + ":modifyAckDeadline", self._modify_ack_deadline)

    # -- what tests look at --------------------------------------------------------------

    def messages(self, topic: str) -> list[Stored]:
        with self.lock:
            return list(self.published[topic])

    def waiting(self, subscription: str) -> list[Stored]:
        with self.lock:
            return list(self._subscriptions[subscription].messages)

    def drain(self, subscription: str) -> list[Stored]:
        """Take every message waiting on a push subscription (as if its function acked)."""
        with self.lock:
            sub = self._subscriptions[subscription]
            taken, sub.messages = sub.messages, []
            return taken

    # -- publish -------------------------------------------------------------------------

    def _publish(self, body: Any, project: str, topic: str) -> Reply:
        expect(project == self.project, f"project {project!r}")
        if topic not in self.published:
            return error_reply(404, f"Resource not found (resource={topic}).", "notFound")
        expect(isinstance(body, dict) and set(body) == {"messages"}, f"publish body {body!r}")
        messages = body["messages"]
        expect(isinstance(messages, list) and len(messages) > 0, "messages must be a list")
        expect(len(messages) <= _MAX_MESSAGES_PER_PUBLISH, f"{len(messages)} messages > 1000")
        stored = [self._decoded(m) for m in messages]
        with self.lock:
            for message in stored:
                self.published[topic].append(message)
                for sub in self._subscriptions.values():
                    if sub.topic == topic:
                        sub.messages.append(replace(message))
        return 200, {"messageIds": [m.message_id for m in stored]}

    def _decoded(self, message: Any) -> Stored:
        expect(isinstance(message, dict) and set(message) <= _PUBLISH_KEYS, f"message {message}")
        data = message.get("data", "")
        try:
            raw: bytes | None = base64.b64decode(data, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raw = None
        expect(raw is not None, f"data is not base64: {data!r}")
        attributes = message.get("attributes", {})
        expect(isinstance(attributes, dict), "attributes must be an object")
        expect(
            all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()),
            f"attributes must map strings to strings: {attributes}",
        )
        expect(raw or attributes, "a message needs data or attributes")
        stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return Stored(str(next(self._ids)), raw, dict(attributes), stamp)

    # -- subscriptions -------------------------------------------------------------------

    def _subscription(self, project: str, name: str) -> _Subscription:
        expect(project == self.project, f"project {project!r}")
        expect(name in self._subscriptions, f"no subscription {name}")
        return self._subscriptions[name]

    def _pull(self, body: Any, project: str, name: str) -> Reply:
        sub = self._subscription(project, name)
        expect(isinstance(body, dict) and set(body) <= {"maxMessages", "returnImmediately"},
               f"pull body {body}")  # fmt: skip
        wanted = body.get("maxMessages", 0)
        expect(isinstance(wanted, int) and wanted > 0, "maxMessages must be positive")
        now = time.monotonic()
        received = []
        with self.lock:
            for message in sub.messages:
                if len(received) == wanted:
                    break
                if message.leased_until > now:
                    continue
                message.ack_id = uuid.uuid4().hex
                message.leased_until = now + sub.ack_deadline_s
                received.append({"ackId": message.ack_id, "message": _wire(message)})
        return 200, {"receivedMessages": received} if received else {}

    def _acknowledge(self, body: Any, project: str, name: str) -> Reply:
        sub = self._subscription(project, name)
        ack_ids = _ack_ids(body, {"ackIds"})
        with self.lock:
            sub.messages = [m for m in sub.messages if m.ack_id not in ack_ids or not m.ack_id]
        return 200, {}

    def _modify_ack_deadline(self, body: Any, project: str, name: str) -> Reply:
        sub = self._subscription(project, name)
        ack_ids = _ack_ids(body, {"ackIds", "ackDeadlineSeconds"})
        # proto3 JSON leaves out zero values: no ackDeadlineSeconds means 0, "release now".
        seconds = body.get("ackDeadlineSeconds", 0)
        expect(isinstance(seconds, int) and 0 <= seconds <= 600, f"ackDeadlineSeconds {seconds}")
        now = time.monotonic()
        with self.lock:
            for message in sub.messages:
                if message.ack_id and message.ack_id in ack_ids:
                    message.leased_until = now + seconds
        return 200, {}


def _ack_ids(body: Any, allowed: set[str]) -> set[str]:
    expect(isinstance(body, dict) and set(body) <= allowed, f"body {body}")
    ids = body.get("ackIds")
    expect(isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids), "ackIds")
    return set(ids)


def _wire(message: Stored) -> dict[str, Any]:
    return {
        "data": base64.b64encode(message.data).decode(),
        "attributes": message.attributes,
        "messageId": message.message_id,
        "publishTime": message.publish_time,
    }
