"""ApiSession: pooled HTTP connections to one provider's REST API, and what its answers mean.

One `requests.Session` per thread (a Session is not safe to share between threads), each
keeping its connections alive between chunks. Transport failures become TransientError;
401/403 become ConfigurationError (a wrong key is the operator's problem, and marking every
recipient as rejected would lose the campaign: the message is retried and dead-lettered
instead). Neither error text ever contains the credentials.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from shared.domain.errors import ConfigurationError, TransientError

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0


class ApiSession:
    def __init__(
        self,
        provider: str,
        base_url: str,
        configure: Callable[[requests.Session], None],
        credential_setting: str,
    ) -> None:
        """`configure` adds authentication to each new session; `credential_setting` names the
        setting to fix when the provider refuses it."""
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._configure = configure
        self._credential_setting = credential_setting
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._configure(session)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST to base_url + path. Raises TransientError when the API is unreachable and
        ConfigurationError when it refuses the credentials."""
        url = self.base_url + path
        try:
            response = self._session().post(
                url, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), **kwargs
            )
        except requests.RequestException as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
            raise TransientError(f"{self.provider} API unreachable: {detail}") from exc
        if response.status_code in (401, 403):
            raise ConfigurationError(
                f"{self.provider} refused the request ({response.status_code}: "
                f"{short_body(response)}); check {self._credential_setting}"
            )
        return response

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or an HTTP date) or, failing that,
    `X-RateLimit-Reset` (a unix time, as SendGrid sends it); None when neither says."""
    now = time.time() if now is None else now
    value = headers.get("Retry-After", "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = headers.get("X-RateLimit-Reset", "").strip()
    try:
        return max(0.0, float(reset) - now) if reset else None
    except ValueError:
        return None


def short_body(response: requests.Response, limit: int = 200) -> str:
    """The start of an error body, for details and logs."""
    return " ".join(response.text[:limit].split())
