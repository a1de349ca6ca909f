"""The console app: the dashboard app (same pages, navigation and look) plus sign-in and the
pages that act: campaigns, subscribers, templates, imports, dead letters.

Served at /dashboard by `make run` and, in GCP, by the admin function. Every view calls the
service the CLI and the admin API call; a refusal (InvalidInput, Conflict) is shown with the
service's own words, next to the field it names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import flask

from shared.bootstrap import Container
from shared.console import (
    auth,
    campaign_views,
    doctor_views,
    import_views,
    operation_views,
    subscriber_views,
    template_views,
)
from shared.console.access import ConsoleAccess
from shared.console.render import CHROME, render
from shared.dashboard import pages
from shared.dashboard.app import create_dashboard_app
from shared.domain.errors import AlreadyExists, Conflict, RateLimited
from shared.entrypoints.http import client_ip
from shared.repositories.rate_limits import RateLimits

Services = Callable[[], Container]


def create_console_app(
    services: Services,
    access: ConsoleAccess,
    triggers: Callable[[], dict[str, Any]] | None = None,
    iap: auth.IdentityCheck | None = None,
) -> flask.Flask:
    """The dashboard app with the console in it. `services` gives the container (per request);
    `iap` checks an Identity-Aware Proxy header when the console runs behind one."""
    app = create_dashboard_app(
        lambda: services().dashboards,
        triggers,
        lambda campaign_id: services().campaign_service.sending(campaign_id),
        lambda campaign_id: services().campaign_service.delivery(campaign_id),
        samples=pages.samples_from(services),
    )
    settings = services().settings
    app.config["CONSOLE_SERVICES"] = services
    pages.environment().globals["console"] = CHROME
    console = flask.Blueprint("console", __name__, static_folder="static",
                              static_url_path="/console/static")  # fmt: skip
    _sign_in_routes(console, access, services)
    for views in (campaign_views, subscriber_views, template_views, import_views,
                  operation_views, doctor_views):  # fmt: skip
        views.register(console)
    app.register_blueprint(console)
    secure = settings.base_url.startswith("https://") or not settings.is_local
    auth.install(app, access, settings.signing_key, secure, _refuse, iap)
    _register_errors(app)
    return app


def for_function(services: Services) -> flask.Flask:
    """The console as the admin function serves it in GCP (built once per instance): the admin
    key signs in, and Identity-Aware Proxy's signed header when MAILPIPE_CONSOLE_IAP_AUDIENCE
    is set."""
    from shared.console.iap import iap_identity

    access = ConsoleAccess.from_settings(services().settings)
    return create_console_app(services, access, lambda: trigger_page(services()),
                              iap_identity(access))  # fmt: skip


def trigger_page(c: Container) -> dict[str, Any]:
    from shared.analytics import triggers_report

    return triggers_report.page_context(
        c.warehouse, c.dashboards.catalog, c.trigger_catalog.current()
    )


def _refuse(status: int, title: str, message: str) -> tuple[str, int]:
    return render("error.html", "error", title=title, message=message), status


# Sign-in attempts per client address and window, counted before the key is checked, so that
# guessing the admin key from one address is slow and an answer never tells a right guess from
# a limited one. Generous enough for an office behind one address.
SIGN_IN_ATTEMPTS, SIGN_IN_WINDOW_S = 20, 15 * 60


def _count_sign_in(services: Services) -> None:
    """Count one sign-in attempt from this client; RateLimited (429) over the limit."""
    c = services()
    address = client_ip(flask.request, c.settings.trusted_proxy_hops)
    key = hashlib.sha256(address.encode()).hexdigest()[:24]
    try:
        RateLimits(c.documents).hit(f"console-sign-in:{key}", SIGN_IN_ATTEMPTS,
                                    SIGN_IN_WINDOW_S, c.clock())  # fmt: skip
    except RateLimited as exc:
        raise RateLimited(f"too many sign-in attempts from your address; try again in "
                          f"{SIGN_IN_WINDOW_S // 60} minutes") from exc  # fmt: skip


def _sign_in_routes(console: flask.Blueprint, access: ConsoleAccess, services: Services) -> None:
    @console.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> Any:
        request = flask.request
        target = auth.safe_next(request.values.get("next"), flask.url_for("index"))
        if request.method == "POST":
            _count_sign_in(services)
            if auth.sign_in(access, request.form.get("key", "")):
                return flask.redirect(target, 303)
            page = render("sign_in.html", "sign-in", next=target, error="That key is not right.")
            return page, 401
        return render("sign_in.html", "sign-in", next=target, error=None)

    @console.post("/sign-out")
    def sign_out() -> Any:
        auth.sign_out()
        return flask.redirect(flask.url_for("console.sign_in"), 303)


def _register_errors(app: flask.Flask) -> None:
    @app.errorhandler(Conflict)
    @app.errorhandler(AlreadyExists)
    def conflict(exc: Exception) -> tuple[str, int]:
        return _refuse(409, "Not now", str(exc))

    @app.errorhandler(RateLimited)
    def limited(exc: RateLimited) -> tuple[str, int]:
        return _refuse(429, "Slow down", str(exc))
