"""send: a rendered batch -> the email service provider, exactly once per recipient."""

import functions_framework

from shared.bootstrap import container
from shared.domain.messages import SendBatch
from shared.entrypoints.pubsub import handle_push


@functions_framework.cloud_event
def send(cloud_event):
    handle_push(cloud_event, SendBatch.decode, container().send.handle, "send")
