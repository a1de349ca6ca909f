"""render: a batch of recipients -> personalized MIME messages on send-requests."""

import functions_framework

from shared.bootstrap import container
from shared.domain.messages import RenderRequest
from shared.entrypoints.pubsub import handle_push


@functions_framework.cloud_event
def render(cloud_event):
    handle_push(cloud_event, RenderRequest.decode, container().render.handle, "render")
