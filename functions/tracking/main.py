"""tracking: GET /o/<token> answers a 1x1 GIF and records an open; GET /c/<token> records a
click and redirects (302) to the one URL signed into that link; anything else is 404."""

import base64
import contextlib

import flask
import functions_framework

from shared.bootstrap import container
from shared.domain.errors import InvalidToken
from shared.entrypoints.http import client_ip, endpoint, json_response
from shared.entrypoints.routes import path_below_route
from shared.services.tracking import Hit

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, max-age=0"}


def _hit(request, token: str) -> Hit:
    return Hit(token, request.headers.get("User-Agent", ""), client_ip(request))


@functions_framework.http
@endpoint(max_body=0)
def tracking(request):
    kind, _, token = path_below_route(request, "tracking").strip("/").partition("/")
    service = container().tracking
    if kind == "o" and token:
        # Still a pixel for a bad token: a broken image in someone's mail helps nobody.
        with contextlib.suppress(InvalidToken):
            service.open(_hit(request, token))
        return flask.Response(PIXEL, mimetype="image/gif", headers=NO_CACHE)
    if kind == "c" and token:
        return flask.redirect(service.click(_hit(request, token)), 302)
    return json_response({"error": "unknown tracking link"}, 404)
