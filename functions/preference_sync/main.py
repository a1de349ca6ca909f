"""preference-sync: subscriber lifecycle events -> confirmation/welcome mail and the warehouse."""

import functions_framework

from shared.bootstrap import container
from shared.domain.messages import SubscriberEvent
from shared.entrypoints.pubsub import handle_push


@functions_framework.cloud_event
def preference_sync(cloud_event):
    handle_push(
        cloud_event, SubscriberEvent.decode, container().preference_sync.handle, "preference-sync"
    )
