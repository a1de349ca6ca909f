"""PubSubPublisher: the Publisher port on Cloud Pub/Sub.

The client batches (BatchSettings: up to 500 messages or 4 MB per request, or 10 ms) and
retries 429/5xx/deadlines on its own for `gcp_retry_deadline_s`. `publish` hands every message
to the client first, so they share requests, and returns only when every future has resolved:
a function must never finish before its publishes are confirmed. If any failed, it raises
(TransientError for what a later retry may fix) after all have resolved; some messages may then
be published already, which at-least-once consumers tolerate.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures
from typing import TYPE_CHECKING

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type

from shared.adapters.gcp import clients
from shared.adapters.gcp.errors import translate, translated
from shared.domain.errors import InvalidInput
from shared.metering import NULL_METER, OperationMeter
from shared.ports import OutboundMessage
from shared.settings import Settings

if TYPE_CHECKING:
    from google.cloud.pubsub_v1.publisher.futures import Future

BATCH = pubsub_v1.types.BatchSettings(max_messages=500, max_bytes=4_000_000, max_latency=0.01)
_RETRYABLE = (
    gexc.Aborted,
    gexc.Cancelled,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.TooManyRequests,
    gexc.ServiceUnavailable,
    gexc.Unknown,
)


class PubSubPublisher:
    def __init__(
        self,
        client: pubsub_v1.PublisherClient,
        project: str,
        meter: OperationMeter = NULL_METER,
        confirm_timeout_s: float = 120.0,
    ) -> None:
        self._client = client
        self._project = project
        self._meter = meter
        self._confirm_timeout_s = confirm_timeout_s

    @classmethod
    def from_settings(
        cls, settings: Settings, meter: OperationMeter = NULL_METER
    ) -> PubSubPublisher:
        deadline = settings.gcp_retry_deadline_s
        retry = Retry(predicate=if_exception_type(*_RETRYABLE), initial=0.1, timeout=deadline)
        options = pubsub_v1.types.PublisherOptions(retry=retry, timeout=min(60.0, deadline))
        client = clients.publisher_client(settings, BATCH, options)
        # The client's own retry gives up after `deadline`; waiting a little longer than that
        # for the futures only guards against a future that never resolves.
        return cls(client, settings.gcp_project, meter, confirm_timeout_s=deadline + 30)

    def topic_path(self, topic: str) -> str:
        return f"projects/{self._project}/topics/{topic}"

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        for message in messages:
            _check(message)
        path = self.topic_path(topic)
        with translated(f"publish to {topic}"):
            pending = [self._client.publish(path, m.data, **dict(m.attributes)) for m in messages]
        ids = self._confirmed(topic, pending)
        for message in messages:
            self._meter.count("pubsub.publish", 1, len(message.data))
        return ids

    def _confirmed(self, topic: str, pending: list[Future]) -> list[str]:
        """The message ids, once every future resolved; the first failure raised after that."""
        futures.wait(pending, timeout=self._confirm_timeout_s)
        ids: list[str] = []
        for future in pending:
            if not future.done():
                raise translate(TimeoutError("publish not confirmed"), f"publish to {topic}")
            error = future.exception()
            if error is not None:
                raise translate(error, f"publish to {topic}") from error
            ids.append(future.result())
        return ids


def _check(message: OutboundMessage) -> None:
    """Pub/Sub's own rules, checked before anything is sent (the local bus checks the same)."""
    if not message.data and not message.attributes:
        raise InvalidInput("a message needs data or attributes", field="data")
    for key, value in message.attributes.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput(f"attribute {key!r} must map str to str", field="attributes")
