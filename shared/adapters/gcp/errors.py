"""The one place where google-cloud SDK errors become the domain's (shared/domain/errors.py).

    Aborted (contention)                               -> TransientError (retry later)
    429, 5xx, DeadlineExceeded, RetryError, timeouts,
      connection failures, BigQuery's rate/quota and
      backend reasons (sent with a 403 or 5xx)          -> TransientError
    AlreadyExists, Conflict                            -> AlreadyExists
    NotFound                                           -> NotFound
    401, 403, no default credentials                   -> ConfigurationError (credentials, IAM)
    FailedPrecondition                                 -> ConfigurationError (e.g. a missing index)
    other 4xx                                          -> `bad_request`: PermanentFailure, or
                                                          InvalidInput where the caller wrote it

Adapters wrap every SDK call in `translated(...)`. Domain errors pass through untouched, so a
callback that raises one (a Firestore transaction's `mutate`) keeps its meaning.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from shared.domain import errors as domain

TRANSIENT_REASONS = frozenset(
    {"rateLimitExceeded", "quotaExceeded", "backendError", "internalError", "timeout"}
)

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    gexc.Aborted,
    gexc.TooManyRequests,
    gexc.ServerError,
    gexc.RetryError,
    gexc.Cancelled,
    concurrent.futures.TimeoutError,
    TimeoutError,
    ConnectionError,
    requests.ConnectionError,
    requests.Timeout,
    auth_exc.TransportError,
)

_SDK_ERRORS: tuple[type[BaseException], ...] = (
    gexc.GoogleAPIError,
    auth_exc.GoogleAuthError,
    *_TRANSIENT_TYPES,
)


def reasons(exc: gexc.GoogleAPICallError) -> set[str]:
    """The machine-readable reasons of an API error (BigQuery's `errors[].reason`, gRPC's
    ErrorInfo reason)."""
    found = {e.get("reason", "") for e in exc.errors if isinstance(e, dict)}
    if exc.reason:
        found.add(exc.reason)
    return found - {""}


def translate(
    exc: BaseException, what: str, bad_request: type[domain.MailpipeError] = domain.PermanentFailure
) -> domain.MailpipeError:
    """The domain error for an SDK error raised while doing `what`."""
    message = f"{what}: {exc}"
    if isinstance(exc, gexc.GoogleAPICallError) and reasons(exc) & TRANSIENT_REASONS:
        return domain.TransientError(message)
    if isinstance(exc, _TRANSIENT_TYPES):
        return domain.TransientError(message)
    if isinstance(exc, gexc.AlreadyExists | gexc.Conflict):
        return domain.AlreadyExists(message)
    if isinstance(exc, gexc.NotFound):
        return domain.NotFound(message)
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return domain.ConfigurationError(message)
    if isinstance(exc, gexc.Unauthorized | gexc.Forbidden | gexc.FailedPrecondition):
        return domain.ConfigurationError(message)
    if isinstance(exc, gexc.ClientError):
        return bad_request(message)
    return domain.TransientError(message)  # an unknown failure: let the platform retry


@contextmanager
def translated(
    what: str, bad_request: type[domain.MailpipeError] = domain.PermanentFailure
) -> Iterator[None]:
    """Run SDK calls; their errors leave as domain errors with the SDK error as the cause."""
    try:
        yield
    except domain.MailpipeError:
        raise
    except _SDK_ERRORS as exc:
        raise translate(exc, what, bad_request) from exc
