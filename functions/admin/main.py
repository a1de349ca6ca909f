"""admin: the campaign and subscriber admin API (JSON in and out); routes in
shared/services/admin_api.py.

Every request needs `Authorization: Bearer <MAILPIPE_ADMIN_API_KEY>` (compared in constant
time): 401 without it or with a wrong key, 503 while no key is configured. In GCP the function
is also private (IAM), so a caller needs both an identity token and the key. A state change the
campaign does not allow answers 409 with the reason.
"""

import functions_framework

from shared.bootstrap import container
from shared.domain.errors import AlreadyExists, Conflict
from shared.entrypoints.http import HttpError, check_body_size, endpoint, json_response, read_fields
from shared.services.admin_api import AdminApi, authorized

MAX_BODY_BYTES = 10 * 1024 * 1024  # CSV imports


@functions_framework.http
@endpoint(max_body=MAX_BODY_BYTES)
def admin(request):
    c = container()
    if not c.settings.admin_api_key:
        raise HttpError(503, "admin API disabled: set MAILPIPE_ADMIN_API_KEY")
    authorized(request.headers.get("Authorization", ""), c.settings.admin_api_key)
    check_body_size(request, MAX_BODY_BYTES)
    api = AdminApi(c.campaign_service, c.subscriber_import)
    try:
        status, answer = api.handle(
            request.method,
            request.path,
            request.args,
            body=lambda: read_fields(request) if request.get_data(cache=True) else {},
            raw=lambda: request.get_data(cache=True),
        )
    except (Conflict, AlreadyExists) as exc:
        raise HttpError(409, str(exc)) from exc
    return json_response(answer, status)
