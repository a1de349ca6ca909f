"""triggers: behaviour events start and cancel trigger runs; the scheduler's sweep sends the
runs that are due (see shared/services/triggers.py)."""

import functions_framework

from shared.bootstrap import container
from shared.domain.behaviour import BehaviourMessage
from shared.entrypoints.pubsub import handle_push


@functions_framework.cloud_event
def triggers(cloud_event):
    handle_push(cloud_event, BehaviourMessage.decode, container().triggers.handle, "triggers")
