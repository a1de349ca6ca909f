"""Sign-in, sessions and CSRF for the console (Flask).

Sessions are Flask's: a cookie signed with itsdangerous under a key derived from
MAILPIPE_SIGNING_KEY, HttpOnly, SameSite=Strict, Secure when served over https, for 12 hours.
Every POST carries the session's CSRF token (a hidden field, or the X-CSRF-Token header for
the console's own scripts); a POST without a session or without the token is refused before any
view runs, so no action happens without sign-in. A viewer reaches only the dashboards.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import flask

from shared.console.access import ADMIN, ConsoleAccess

SESSION_HOURS = 12
OPEN_ENDPOINTS = frozenset({"console.sign_in", "console.static"})
# What a viewer may open: the dashboards (read-only) and signing out.
VIEWER_ENDPOINTS = frozenset({"index", "campaign", "deliverability", "growth", "trigger_report",
                              "console.sign_out", "console.static"})  # fmt: skip
IdentityCheck = Callable[[flask.Request], str | None]


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = flask.session.get("csrf")
    if not token:
        token = flask.session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


def current_role() -> str | None:
    return flask.g.get("console_role")


def install(
    app: flask.Flask,
    access: ConsoleAccess,
    signing_key: str,
    secure: bool,
    refuse: Callable[[int, str, str], Any],
    iap: IdentityCheck | None = None,
) -> None:
    """Sessions and the guard in front of every route. `refuse(status, title, message)` makes
    the error page; `iap` returns the e-mail address IAP vouched for, or None."""
    app.secret_key = hmac.new(signing_key.encode(), b"mailpipe-console-session",
                              hashlib.sha256).hexdigest()  # fmt: skip
    app.config.update(
        SESSION_COOKIE_NAME="mailpipe_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )

    @app.before_request
    def guard() -> Any:
        if not access.enabled:
            return refuse(
                503,
                "Console disabled",
                "Set MAILPIPE_ADMIN_API_KEY (or put Identity-Aware Proxy in front).",
            )
        if flask.request.method not in ("GET", "HEAD") and not _csrf_ok():
            return refuse(
                403,
                "Form expired",
                "This form was not sent from a signed-in page (its security token "
                "is missing or stale). Reload the page and try again.",
            )
        flask.g.console_role = _role(access, iap)
        endpoint = flask.request.endpoint or ""
        if endpoint in OPEN_ENDPOINTS:
            return None
        role = current_role()
        if role is None:
            if flask.request.method in ("GET", "HEAD"):
                return flask.redirect(flask.url_for("console.sign_in", next=_here()))
            return refuse(401, "Sign in first", "Sign in to the console to do this.")
        if role != ADMIN and endpoint not in VIEWER_ENDPOINTS:
            return refuse(
                403, "Read-only", "You signed in to read the dashboards; this needs the admin key."
            )
        return None


def sign_in(access: ConsoleAccess, key: str) -> str | None:
    """Start a session for `key`'s role; None (and no session) for a wrong key."""
    role = access.role_for_key(key)
    if role is None:
        return None
    csrf = secrets.token_urlsafe(24)  # a fresh token: one seen before sign-in is not reused
    flask.session.clear()
    flask.session.permanent = True
    flask.session.update(role=role, key=access.fingerprint(role), csrf=csrf)
    return role


def sign_out() -> None:
    flask.session.clear()


def safe_next(target: str | None, default: str) -> str:
    """Only a path on this site (never another host) to go to after signing in."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


def _role(access: ConsoleAccess, iap: IdentityCheck | None) -> str | None:
    if iap is not None:
        identity = iap(flask.request)
        if identity:
            flask.g.console_identity = identity
            return access.role_for_identity(identity)
    role = flask.session.get("role")
    if role and hmac.compare_digest(str(flask.session.get("key", "")), access.fingerprint(role)):
        return str(role)
    return None


def _csrf_ok() -> bool:
    expected = flask.session.get("csrf")
    given = flask.request.form.get("csrf_token") or flask.request.headers.get("X-CSRF-Token")
    return bool(expected and given) and hmac.compare_digest(str(expected), str(given))


def _here() -> str:
    request = flask.request
    return request.script_root + request.full_path.rstrip("?")
