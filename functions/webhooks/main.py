"""webhooks: POST /<provider> with the provider's signed event payload -> esp-feedback.

The signature over the raw body is verified before anything else (401 when missing, invalid or
stale; 400 for a malformed body; 404 for a provider that is not configured)."""

import functions_framework

from shared.bootstrap import container
from shared.entrypoints.http import check_body_size, endpoint, json_response
from shared.entrypoints.routes import path_below_route

MAX_WEBHOOK_BYTES = 1024 * 1024


@functions_framework.http
@endpoint(max_body=MAX_WEBHOOK_BYTES)
def webhooks(request):
    if request.method != "POST":
        return json_response({"error": "webhooks accept POST only"}, 405)
    provider = path_below_route(request, "webhooks").strip("/").split("/")[0]
    check_body_size(request, MAX_WEBHOOK_BYTES)
    accepted = container().webhooks.receive(
        provider, dict(request.headers), request.get_data(cache=True)
    )
    return json_response({"status": "accepted", "events": accepted})
