"""Amazon SNS signing certificates: where they may come from, how they are fetched, the cache.

An SNS message names the certificate that signed it (`SigningCertURL`) and, for a subscription,
the URL that confirms it (`SubscribeURL`). Both are attacker-controlled text until the signature
holds, so each must be an https URL on `sns.<region>.amazonaws.com` and nothing else: no other
scheme, port, user-info (`https://sns.us-east-1.amazonaws.com@evil.example/`), look-alike suffix
(`sns.us-east-1.amazonaws.com.evil.example`), backslash or non-ASCII trick. The certificate is
trusted because it came over TLS from that host (the AWS SDK verifiers do the same); its chain
is not re-validated here, but its validity period is.

Certificates are cached in process by URL (SNS rotates them rarely; a warm instance fetches each
once). The network sits behind the small `SnsHttp` port so tests can serve their own
certificate while the URL checks still run on real-looking URLs.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.domain.errors import TransientError, Unauthorized

_SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-\d\.amazonaws\.com")
FETCH_TIMEOUT_S = 5.0


class SnsHttp(Protocol):
    """The two requests an SNS subscriber makes (the URLs are checked before either call)."""

    def fetch_certificate(self, url: str) -> bytes:
        """The PEM bytes at `url`. Raises TransientError when unreachable, Unauthorized when
        the host answers with anything but the certificate."""

    def confirm_subscription(self, url: str) -> None:
        """GET the SubscribeURL. Raises TransientError when it fails (SNS sends it again)."""


class RequestsSnsHttp:
    """SnsHttp over `requests`, without redirects (a redirect could leave amazonaws.com)."""

    def fetch_certificate(self, url: str) -> bytes:
        response = self._get(url)
        if response.status_code != 200:
            raise Unauthorized(f"SNS certificate URL answered {response.status_code}")
        return response.content

    def confirm_subscription(self, url: str) -> None:
        response = self._get(url)
        if response.status_code != 200:
            raise TransientError(f"SNS SubscribeURL answered {response.status_code}")

    @staticmethod
    def _get(url: str) -> requests.Response:
        try:
            return requests.get(url, timeout=FETCH_TIMEOUT_S, allow_redirects=False)
        except requests.RequestException as exc:
            raise TransientError(f"cannot reach Amazon SNS: {exc}") from exc


def check_sns_url(url: object, what: str) -> str:
    """`url` if it is https on an sns.<region>.amazonaws.com host; Unauthorized otherwise."""
    if not isinstance(url, str) or not url.isascii() or any(c in url for c in "\\@ \t\r\n"):
        raise Unauthorized(f"{what} is not an Amazon SNS URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Unauthorized(f"{what} is not an Amazon SNS URL") from exc
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or port is not None
        or parts.netloc.lower() != host
        or not _SNS_HOST.fullmatch(host)
    ):
        raise Unauthorized(f"{what} must be https on sns.<region>.amazonaws.com")
    return url


class SnsCertificates:
    """Signing certificates by URL: checked, fetched once, kept for the life of the process."""

    def __init__(self, http: SnsHttp) -> None:
        self._http = http
        self._cache: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def public_key(self, url: object, now: float) -> rsa.RSAPublicKey:
        """The RSA key of a currently valid certificate at a checked SNS URL; Unauthorized
        for a bad URL, an unusable or expired certificate."""
        checked = check_sns_url(url, "SigningCertURL")
        if not urlsplit(checked).path.endswith(".pem"):
            raise Unauthorized("SigningCertURL must name a .pem certificate")
        certificate = self._certificate(checked)
        moment = datetime.fromtimestamp(now, UTC)
        if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
            raise Unauthorized("the SNS signing certificate is not valid now")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Unauthorized("the SNS signing certificate has no RSA key")
        return key

    def _certificate(self, url: str) -> x509.Certificate:
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None:
            return cached
        try:
            certificate = x509.load_pem_x509_certificate(self._http.fetch_certificate(url))
        except ValueError as exc:
            raise Unauthorized("SigningCertURL did not return a PEM certificate") from exc
        with self._lock:
            self._cache[url] = certificate
        return certificate

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)
