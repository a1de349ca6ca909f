"""The one place that decides what a Pub/Sub-triggered function does with an outcome.

success, AlreadyProcessed          -> acknowledge
InvalidInput (bad payload)         -> log with the message id, acknowledge (retrying won't help)
TransientError, PermanentFailure,
anything unexpected                -> raise: the platform redelivers with backoff and, after
                                      the subscription's max attempts, dead-letters it

The error of a failed delivery is kept for the thread that pushed it (`take_failure`): the
local bus records it with the nack, so a dead letter says what really went wrong.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.domain.errors import AlreadyProcessed, InvalidInput, TransientError
from shared.logs import log_context

log = logging.getLogger("mailpipe.pubsub")
T = TypeVar("T")
_failure = threading.local()


def take_failure() -> str | None:
    """The error of the last delivery this thread handled, if it failed (and forget it)."""
    error: str | None = getattr(_failure, "error", None)
    _failure.error = None
    return error


@dataclass(frozen=True)
class PushedMessage:
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: str


def unwrap(cloud_event: Any) -> PushedMessage:
    """The Pub/Sub message inside a `google.cloud.pubsub.topic.v1.messagePublished` event."""
    try:
        message = cloud_event.data["message"]
        data = base64.b64decode(message.get("data") or "", validate=True)
        return PushedMessage(
            message_id=str(message.get("messageId") or message.get("message_id") or ""),
            data=data,
            attributes=dict(message.get("attributes") or {}),
            publish_time=str(message.get("publishTime") or ""),
        )
    except (AttributeError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidInput(f"not a Pub/Sub message event: {exc}") from exc


def handle_push(
    cloud_event: Any, decode: Callable[[bytes], T], handle: Callable[[T], object], stage: str
) -> None:
    """Decode the pushed message and run the handler under the outcome rules above."""
    context: dict[str, Any] = {"stage": stage}
    try:
        message = unwrap(cloud_event)
        context["message_id"] = message.message_id
        with log_context(stage=stage, message_id=message.message_id):
            payload = decode(message.data)
            result = handle(payload)
    except AlreadyProcessed as exc:
        log.info("already processed: %s", exc, extra=context)
        return
    except InvalidInput as exc:
        log.error("dropped a malformed message: %s", exc, extra=context)
        return
    except TransientError as exc:
        log.warning("transient failure, will be redelivered: %s", exc, extra=context)
        _failure.error = f"{type(exc).__name__}: {exc}"
        raise
    except Exception as exc:
        log.exception("failed; will be redelivered and then dead-lettered", extra=context)
        _failure.error = f"{type(exc).__name__}: {exc}"
        raise
    log.info("processed", extra={**context, "result": result})
