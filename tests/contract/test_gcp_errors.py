"""The one translation of google-cloud SDK errors into the domain's (shared/adapters/gcp/errors.py).
Real SDK exception objects, built as the clients build them from HTTP and gRPC answers."""

from __future__ import annotations

import concurrent.futures

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from shared.adapters.gcp.errors import translate, translated
from shared.domain import errors as domain


def http_error(status: int, reason: str = "") -> gexc.GoogleAPICallError:
    errors = [{"reason": reason, "message": reason}] if reason else []
    return gexc.from_http_status(status, f"HTTP {status}", errors=errors)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (gexc.Aborted("contention"), domain.TransientError),
        (http_error(429), domain.TransientError),
        (gexc.ResourceExhausted("quota"), domain.TransientError),
        (http_error(500), domain.TransientError),
        (http_error(503), domain.TransientError),
        (gexc.DeadlineExceeded("slow"), domain.TransientError),
        (gexc.RetryError("gave up", cause=http_error(503)), domain.TransientError),
        (http_error(403, "rateLimitExceeded"), domain.TransientError),
        (http_error(400, "backendError"), domain.TransientError),
        (concurrent.futures.TimeoutError(), domain.TransientError),
        (requests.ConnectionError("refused"), domain.TransientError),
        (auth_exc.TransportError("metadata server"), domain.TransientError),
        (gexc.AlreadyExists("taken"), domain.AlreadyExists),
        (http_error(409), domain.AlreadyExists),
        (http_error(404), domain.NotFound),
        (http_error(401), domain.ConfigurationError),
        (http_error(403, "accessDenied"), domain.ConfigurationError),
        (gexc.FailedPrecondition("needs an index"), domain.ConfigurationError),
        (auth_exc.DefaultCredentialsError("no credentials"), domain.ConfigurationError),
        (http_error(400, "invalid"), domain.PermanentFailure),
        (gexc.InvalidArgument("bad"), domain.PermanentFailure),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_sdk_errors_become_domain_errors(
    error: BaseException, expected: type[domain.MailpipeError]
) -> None:
    translated_error = translate(error, "doing it")
    assert type(translated_error) is expected
    assert str(translated_error).startswith("doing it: ")


def test_a_bad_request_can_be_the_callers_fault() -> None:
    assert type(translate(http_error(400), "query", domain.InvalidInput)) is domain.InvalidInput


def test_translated_keeps_the_cause_and_lets_domain_errors_through() -> None:
    with pytest.raises(domain.NotFound) as caught, translated("get"):
        raise http_error(404)
    assert isinstance(caught.value.__cause__, gexc.NotFound)
    with pytest.raises(domain.InvalidInput), translated("mutate"):
        raise domain.InvalidInput("raised by a callback")
    with pytest.raises(KeyError), translated("other"):
        raise KeyError("not an SDK error: untouched")
