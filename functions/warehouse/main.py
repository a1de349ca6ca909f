"""warehouse: analytics events from every stage -> BigQuery (DuckDB locally)."""

import functions_framework

from shared.bootstrap import container
from shared.domain.events import decode_events
from shared.entrypoints.pubsub import handle_push


@functions_framework.cloud_event
def warehouse(cloud_event):
    handle_push(cloud_event, decode_events, container().warehousing.handle, "warehouse")
