"""HTTP plumbing shared by the HTTP functions: body limits, parsing, and the error contract.

Every domain error becomes a 4xx/5xx with a JSON (or HTML, for browsers) message saying what is
wrong; nothing ever returns a stack trace.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from shared.domain.errors import (
    ConfigurationError,
    InvalidInput,
    NotFound,
    RateLimited,
    TransientError,
    Unauthorized,
)
from shared.logs import log_context, trace_from_header

log = logging.getLogger("mailpipe.http")
MAX_BODY_BYTES = 64 * 1024
JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Handler = Callable[[flask.Request], flask.Response]


class HttpError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def wants_html(request: flask.Request) -> bool:
    """Browsers ask for text/html by name; API clients (and `*/*`) get JSON."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.mimetype not in JSON_TYPES


def error_response(request: flask.Request, status: int, message: str, field: str | None = None):
    if wants_html(request):
        from shared.entrypoints.pages import render_message

        try:
            return render_message("Something is not right", message, status)
        except Exception:  # no template store: the error must still be an answer, not a 500
            log.exception("error page unavailable; answering in JSON")
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


def json_response(body: Any, status: int = 200) -> flask.Response:
    return flask.Response(json.dumps(body, default=str), status=status, mimetype="application/json")


def client_ip(request: flask.Request, trusted_hops: int | None = None) -> str:
    """The caller's address from X-Forwarded-For, trusting the last `trusted_hops` entries
    (MAILPIPE_TRUSTED_PROXY_HOPS by default). Each proxy appends the address it saw, so the
    entry that many from the right is what the outermost trusted proxy saw: the client. Entries
    left of it are whatever the client sent. Google's layouts (README: client addresses):
      1  straight to the function's own URL: Cloud Run's front end appends "<client>"
      2  behind the HTTPS load balancer: it appends "<client>,<balancer IP>" and Cloud Run's
         front end adds nothing
    0 ignores the header. No header, or fewer entries than hops: the leftmost entry, else the
    socket's peer."""
    if trusted_hops is None:
        from shared.bootstrap import container

        trusted_hops = container().settings.trusted_proxy_hops
    header = ",".join(request.headers.getlist("X-Forwarded-For"))
    entries = [entry.strip() for entry in header.split(",") if entry.strip()]
    if trusted_hops <= 0 or not entries:
        return request.remote_addr or ""
    return entries[-min(trusted_hops, len(entries))]


def check_body_size(request: flask.Request, limit: int = MAX_BODY_BYTES) -> None:
    length = request.content_length
    if length is not None and length > limit:
        raise HttpError(413, f"request body is larger than {limit // 1024} KB")
    # A chunked body has no length: cap the stream itself, so reading it stops at the limit
    # (werkzeug then raises 413) instead of holding a body of any size in memory.
    request.max_content_length = limit
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise HttpError(413, f"request body is larger than {limit // 1024} KB") from exc
    if len(body) >= limit:  # the capped stream stopped at the limit: there was more
        raise HttpError(413, f"request body is larger than {limit // 1024} KB")


def read_fields(request: flask.Request) -> dict[str, Any]:
    """The JSON object or form fields of a POST; 415 for other content types."""
    check_body_size(request)
    mimetype = request.mimetype
    if mimetype in JSON_TYPES:
        try:
            payload = json.loads(request.get_data(cache=True) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"body is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise HttpError(400, "body must be a JSON object")
        return payload
    if mimetype in FORM_TYPES:
        return {k: v if len(v) > 1 else v[0] for k, v in request.form.lists()}
    raise HttpError(
        415, "send application/json or an HTML form (application/x-www-form-urlencoded)"
    )


_STATUS = (
    (HttpError, None),
    (InvalidInput, 400),
    (Unauthorized, 401),
    (NotFound, 404),
    (RateLimited, 429),
    (TransientError, 503),
    (ConfigurationError, 500),
)


def endpoint(handler: Handler) -> Handler:
    """Wraps an HTTP function: maps errors to clear responses and never leaks a stack trace."""

    @functools.wraps(handler)
    def wrapped(request: flask.Request) -> flask.Response:
        with log_context(function=handler.__name__, **_trace(request)):
            return _answer(handler, request)

    return wrapped


def _trace(request: flask.Request) -> dict[str, str]:
    header = request.headers.get("X-Cloud-Trace-Context") or request.headers.get("traceparent")
    if not header:
        return {}
    from shared.bootstrap import container

    return trace_from_header(header, container().settings.gcp_project)


def _answer(handler: Handler, request: flask.Request) -> flask.Response:
    try:
        return handler(request)
    except HttpError as exc:
        return error_response(request, exc.status, exc.message, exc.field)
    except HTTPException as exc:
        return error_response(request, exc.code or 400, exc.description or exc.name)
    except (InvalidInput, Unauthorized, NotFound, RateLimited, TransientError) as exc:
        status = next(code for kind, code in _STATUS if isinstance(exc, kind))
        field = getattr(exc, "field", None)
        if status == 503:
            log.warning("transient failure in %s: %s", handler.__name__, exc)
            return error_response(request, 503, "temporarily unavailable; please retry")
        return error_response(request, status or 400, str(exc), field)
    except Exception:
        log.exception("unexpected error in %s", handler.__name__)
        return error_response(request, 500, "internal error; please try again later")
