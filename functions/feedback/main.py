"""feedback: normalized provider events -> bounce/complaint policy and the warehouse."""

import functions_framework

from shared.bootstrap import container
from shared.domain.feedback import FeedbackEvent
from shared.domain.messages import from_json
from shared.entrypoints.pubsub import handle_push


def _decode(data: bytes) -> FeedbackEvent:
    return FeedbackEvent.from_dict(from_json(data, "feedback event"))


@functions_framework.cloud_event
def feedback(cloud_event):
    handle_push(cloud_event, _decode, container().feedback.handle, "feedback")
