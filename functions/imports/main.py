"""imports: one step of a subscriber import (the file's scan, or one chunk of rows)."""

import functions_framework

from shared.bootstrap import container
from shared.entrypoints.pubsub import handle_push
from shared.services.imports import ImportStep


@functions_framework.cloud_event
def imports(cloud_event):
    handle_push(cloud_event, ImportStep.decode, container().imports.handle, "imports")
