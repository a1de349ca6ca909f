"""dispatch: a campaign (or the scheduler's sweep) -> its audience as render batches."""

import functions_framework

from shared.bootstrap import container
from shared.domain.messages import from_json
from shared.entrypoints.pubsub import handle_push


def _decode(data: bytes) -> dict:
    return from_json(data, "dispatch request")


@functions_framework.cloud_event
def dispatch(cloud_event):
    handle_push(cloud_event, _decode, container().dispatch.handle, "dispatch")
