"""HTTP plumbing shared by the HTTP functions: body limits, parsing, and the error contract.

Every domain error becomes a 4xx/5xx with a JSON (or HTML, for browsers) message saying what is
wrong; nothing ever returns a stack trace.

Bodies are limits first, bytes second. `endpoint(max_body=...)` refuses a declared
Content-Length over the route's limit with 413 before a byte is read, caps the stream for a
body without a length (chunked), and bounds form parsing; JSON goes through strict_json (no
NaN/Infinity, at most MAX_JSON_DEPTH levels). A route that takes no body (max_body=0) never
reads one. After the handler, whatever it did not read is dropped unread: functions-framework
otherwise reads every request's whole body into memory after the response (its
`read_request` hook), which held a 200 MB body to the open pixel in RAM. The server (gunicorn
in GCP, waitress locally) discards unread bytes from the socket in small pieces.
"""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Callable
from typing import Any, overload

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from shared.domain import strict_json
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
MAX_BODY_BYTES = 64 * 1024  # forms and JSON of the public pages
MAX_FORM_FIELDS = 200  # form fields (and multipart parts) in one request
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


def size_text(limit: int) -> str:
    """A body limit as people say it: 64 KB, 10 MB, 0 bytes."""
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MB"
    if limit >= 1024 and limit % 1024 == 0:
        return f"{limit // 1024} KB"
    return f"{limit} bytes"


def too_large(limit: int) -> HttpError:
    if limit == 0:
        return HttpError(413, "this URL takes no request body")
    return HttpError(413, f"request body is larger than {size_text(limit)}")


def limit_body(request: flask.Request, limit: int) -> None:
    """Refuse a declared body over `limit` before reading it, and cap what can be read: the
    stream of a body without a length, form fields and form memory."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    request.max_content_length = limit
    request.max_form_memory_size = limit
    request.max_form_parts = MAX_FORM_FIELDS


def check_body_size(request: flask.Request, limit: int = MAX_BODY_BYTES) -> None:
    """Read the body (at most `limit` bytes, the rest unread) into the request's cache; 413
    naming the limit when there is more."""
    limit_body(request, limit)
    request.max_content_length = limit + 1  # a stream without a length: one byte more tells
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise too_large(limit) from exc
    if len(body) > limit:
        raise too_large(limit)


def read_json(request: flask.Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The body as strict JSON (see strict_json): 400 naming what is wrong, 413 over `limit`."""
    check_body_size(request, limit)
    try:
        return strict_json.loads(request.get_data(cache=True) or b"null")
    except InvalidInput as exc:
        raise HttpError(400, str(exc)) from exc


def read_fields(request: flask.Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The JSON object or form fields of a POST; 415 for other content types."""
    mimetype = request.mimetype
    if mimetype in JSON_TYPES:
        payload = read_json(request, limit)
        if not isinstance(payload, dict):
            raise HttpError(400, "body must be a JSON object")
        return payload
    if mimetype in FORM_TYPES:
        check_body_size(request, limit)
        too_many = HttpError(413, f"a form has at most {MAX_FORM_FIELDS} fields")
        try:
            fields = list(request.form.lists())
        except RequestEntityTooLarge as exc:  # multipart parts over max_form_parts
            raise too_many from exc
        if sum(len(values) for _, values in fields) > MAX_FORM_FIELDS:
            raise too_many
        return {k: v if len(v) > 1 else v[0] for k, v in fields}
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


@overload
def endpoint(handler: Handler) -> Handler: ...
@overload
def endpoint(*, max_body: int) -> Callable[[Handler], Handler]: ...


def endpoint(handler: Handler | None = None, *, max_body: int = MAX_BODY_BYTES) -> Any:
    """Wraps an HTTP function: enforces its body limit (`max_body` bytes; 0 for a route that
    takes no body), maps errors to clear responses and never leaks a stack trace."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapped(request: flask.Request) -> flask.Response:
            with log_context(function=handler.__name__, **_trace(request)):
                try:
                    return _answer(handler, request, max_body)
                finally:
                    _drop_unread_body(request)

        return wrapped

    return decorate(handler) if handler is not None else decorate


def _drop_unread_body(request: flask.Request) -> None:
    """Whatever the handler did not read stays unread (see the module docstring)."""
    request.stream = io.BytesIO()


def _trace(request: flask.Request) -> dict[str, str]:
    header = request.headers.get("X-Cloud-Trace-Context") or request.headers.get("traceparent")
    if not header:
        return {}
    from shared.bootstrap import container

    return trace_from_header(header, container().settings.gcp_project)


def _answer(handler: Handler, request: flask.Request, max_body: int) -> flask.Response:
    try:
        limit_body(request, max_body)
        return handler(request)
    except HttpError as exc:
        return error_response(request, exc.status, exc.message, exc.field)
    except RequestEntityTooLarge:  # a capped stream or form parser met the limit
        error = too_large(max_body)
        return error_response(request, error.status, error.message)
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
