"""Identity-Aware Proxy in front of the console (GCP): IAP signs each request it lets through
with an ES256 JWT in the `X-Goog-IAP-JWT-Assertion` header. The console trusts the e-mail in it
only after google-auth verified the signature against IAP's public keys, the audience
(MAILPIPE_CONSOLE_IAP_AUDIENCE: /projects/<number>/global/backendServices/<id>) and the expiry.
A missing or bad header means no identity: the key sign-in still works."""

from __future__ import annotations

import logging
from collections.abc import Callable

import flask
import google.auth.exceptions
import google.auth.transport.requests
from google.oauth2 import id_token

from shared.console.access import ConsoleAccess

log = logging.getLogger(__name__)
HEADER = "X-Goog-IAP-JWT-Assertion"
ISSUER = "https://cloud.google.com/iap"


def iap_identity(access: ConsoleAccess) -> Callable[[flask.Request], str | None] | None:
    """The identity check for the console, or None when IAP is not configured."""
    if not access.iap_audience:
        return None
    transport = google.auth.transport.requests.Request()

    def identity(request: flask.Request) -> str | None:
        assertion = request.headers.get(HEADER)
        if not assertion:
            return None
        try:
            claims = id_token.verify_token(assertion, transport, audience=access.iap_audience,
                                           certs_url=access.iap_certs_url)  # fmt: skip
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            log.warning("console: IAP assertion refused: %s", exc)
            return None
        if claims.get("iss") != ISSUER or not claims.get("email"):
            log.warning("console: IAP assertion from %r without an e-mail", claims.get("iss"))
            return None
        return str(claims["email"])

    return identity
