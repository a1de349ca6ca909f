"""admin: the campaign and subscriber admin API (JSON in and out); routes in
shared/services/admin_api.py. Under /dashboard it serves the console (shared/console/): the
dashboards and the pages that act, with their own sign-in (admin key or Identity-Aware Proxy).

Every request needs `Authorization: Bearer <MAILPIPE_ADMIN_API_KEY>` (compared in constant
time): 401 without it or with a wrong key, 503 while no key is configured. In GCP the function
is also private (IAM), so a caller needs both an identity token and the key. A state change the
campaign does not allow answers 409 with the reason.
"""

import functools

import flask
import functions_framework
from werkzeug.exceptions import NotFound as NoRoute
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

from shared.bootstrap import container
from shared.domain.errors import AlreadyExists, Conflict
from shared.entrypoints.http import HttpError, check_body_size, endpoint, json_response, read_fields
from shared.services.admin_api import AdminApi, CsvAnswer, authorized

MAX_BODY_BYTES = 32 * 1024 * 1024  # import files (Cloud Run's request limit); larger ones
# go straight into the import bucket (README: imports of any size)


CONSOLE = "/dashboard"


@functools.lru_cache(maxsize=2)
def _console(c):
    """The console (browser pages, its own sign-in) under /dashboard, built once per instance."""
    from shared.console.app import for_function

    return DispatcherMiddleware(NoRoute(), {CONSOLE: for_function(lambda: c)})


@functions_framework.http
def admin(request):
    if request.path == CONSOLE or request.path.startswith(CONSOLE + "/"):
        try:
            console = _console(container())
        except ImportError as exc:  # the dashboards' SQL and charts need sqlglot, matplotlib
            message = f"the console needs {exc.name} in this function's requirements"
            return flask.Response(message, status=503, mimetype="text/plain")
        return Response.from_app(console, request.environ)
    return _api(request)


@endpoint(max_body=MAX_BODY_BYTES)
def _api(request):
    c = container()
    if not c.settings.admin_api_key:
        raise HttpError(503, "admin API disabled: set MAILPIPE_ADMIN_API_KEY")
    authorized(request.headers.get("Authorization", ""), c.settings.admin_api_key)
    check_body_size(request, MAX_BODY_BYTES)
    api = AdminApi(c.campaign_service, c.subscriber_import, c.imports)
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
    if isinstance(answer, CsvAnswer):
        return flask.Response(bytes(answer), status, mimetype="text/csv")
    return json_response(answer, status)
