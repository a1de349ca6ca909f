"""How the local functions host pushes a bus delivery into a Pub/Sub-triggered function: as the
CloudEvent Eventarc sends a 2nd-gen function, and without leaving the request behind as cyclic
garbage (which held every request body until the collector ran: megabytes at a campaign's pace).
"""

from __future__ import annotations

import base64
import gc
import io
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import functions_framework
import pytest
from werkzeug.wrappers import Request

from shared.adapters.local.sqlite_bus import MESSAGE_PUBLISHED, Delivery
from shared.runner.functions_host import pusher

RECORDER = Path(__file__).parent / "fixtures" / "pubsub_recorder.py"
BODY = b'{"n": 1}' + b" " * 100_000


@pytest.fixture
def received() -> Iterator[list]:
    app = functions_framework.create_app("record", str(RECORDER), "cloudevent")
    events = sys.modules["pubsub_recorder"].RECEIVED
    events.clear()
    yield app, events
    events.clear()


def delivery(data: bytes = BODY) -> Delivery:
    return Delivery("m-7", "orders-audit", data, {"kind": "order"}, "2026-11-30T08:00:00Z", 2)


def test_a_delivery_arrives_as_the_messagepublished_cloudevent(received) -> None:
    app, events = received

    status = pusher(app, "orders")(delivery(b'{"n": 1}'))

    assert status == 200
    (event,) = events
    assert event["type"] == MESSAGE_PUBLISHED
    assert event["source"] == "//pubsub.googleapis.com/projects/local/topics/orders"
    assert (event["id"], event["time"]) == ("m-7", "2026-11-30T08:00:00Z")
    message = event.data["message"]
    assert base64.b64decode(message["data"]) == b'{"n": 1}'
    assert message["attributes"] == {"kind": "order"}
    assert (message["messageId"], message["publishTime"]) == ("m-7", "2026-11-30T08:00:00Z")
    assert event.data["subscription"] == "projects/local/subscriptions/orders-audit"


def test_a_failing_function_answers_a_5xx_status(tmp_path: Path) -> None:
    source = tmp_path / "failing.py"
    source.write_text(
        "import functions_framework\n\n"
        "@functions_framework.cloud_event\n"
        "def fail(event):\n"
        "    raise RuntimeError('boom')\n"
    )
    app = functions_framework.create_app("fail", str(source), "cloudevent")

    assert pusher(app, "orders")(delivery()) >= 500


def test_a_push_leaves_no_garbage_that_holds_the_request(received) -> None:
    """Reference cycles of a request (its environ, body stream, frames of a caught exception)
    keep the body alive until the cyclic collector runs; a push must leave none."""
    app, events = received
    push = pusher(app, "orders")
    push(delivery())  # imports and caches warm up outside the measurement
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            assert push(delivery()) == 200
        events.clear()
        gc.collect()
        holding = [o for o in gc.garbage if isinstance(o, HOLDS_A_REQUEST)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()

    assert holding == []


HOLDS_A_REQUEST = (dict, io.BytesIO, Request, types.FrameType, types.TracebackType)
