"""events: POST /events, the customer's systems reporting what subscribers did.

`Authorization: Bearer <MAILPIPE_EVENTS_API_KEY>` (compared in constant time): 401 without it
or with a wrong key, 503 while no key is configured. Body: one event or {"events": [...]}
(at most 500, at most 1 MB). 202 {"status": "accepted", "accepted": n} for valid events, known
subscriber or not; 400 naming each bad event's index and field, and nothing accepted.
"""

import hmac

import functions_framework

from shared.bootstrap import container
from shared.domain.behaviour import InvalidEvents, decode_body
from shared.domain.errors import Unauthorized
from shared.entrypoints.http import HttpError, check_body_size, endpoint, json_response

MAX_BODY_BYTES = 1024 * 1024


@functions_framework.http
@endpoint(max_body=MAX_BODY_BYTES)
def events(request):
    if request.method != "POST":
        raise HttpError(405, 'POST one event or {"events": [...]} to this URL')
    _authorize(request)
    if request.mimetype != "application/json":
        raise HttpError(415, "send the events as application/json")
    check_body_size(request, MAX_BODY_BYTES)
    try:
        accepted = container().event_intake.accept(decode_body(request.get_data(cache=True)))
    except InvalidEvents as exc:
        problems = [
            {"index": p.index, "field": p.field, "message": p.message} for p in exc.problems
        ]
        return json_response({"error": str(exc), "field": exc.field, "problems": problems}, 400)
    return json_response({"status": "accepted", "accepted": accepted}, 202)


def _authorize(request) -> None:
    key = container().settings.events_api_key
    if not key:
        raise HttpError(503, "event intake disabled: set MAILPIPE_EVENTS_API_KEY")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), key.encode()):
        raise Unauthorized("missing or wrong API key (Authorization: Bearer <key>)")
