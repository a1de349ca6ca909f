"""/dashboard: campaigns, one campaign's figures and A/B test, deliverability, growth.

A Flask app over the Dashboards figures (Warehouse port + document store), so it reads DuckDB
locally and BigQuery with MAILPIPE_BACKEND=gcp. Errors become readable pages: an unknown
campaign is a 404, bad query parameters a 400, an unreachable warehouse a 503; nothing shows a
stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from shared.analytics.dashboards import Dashboards
from shared.analytics.sql_catalog import WINDOW_DAYS
from shared.dashboard import pages
from shared.domain.errors import InvalidInput, MailpipeError, NotFound, TransientError

log = logging.getLogger(__name__)
DEFAULT_DAYS = 56
MAX_DAYS = WINDOW_DAYS  # the dashboard queries read no further back


def create_dashboard_app(
    dashboards: Callable[[], Dashboards],
    triggers: Callable[[], dict[str, Any]] | None = None,
    sending: Callable[[str], dict[str, Any] | None] | None = None,
    delivery: Callable[[str], Any] | None = None,
    samples: pages.Samples | None = None,
) -> flask.Flask:
    """The dashboard app; `dashboards` gives the figures, `triggers` the triggers page's
    context, `sending` a campaign's dispatch state (daily cap) and `delivery` its delivery
    state from the send ledger (campaigns.Delivery), all called per request, so the app can
    be built before the container; `samples` renders a campaign not sent yet for its page."""
    app = flask.Flask("dashboard")

    def show(template: str, page: str, **context: Any) -> str:
        return pages.render(template, link=flask.url_for, page=page, **context)

    @app.get("/")
    def index() -> str:
        return show("index.html", "index", **pages.campaigns_context(dashboards()))

    @app.get("/campaigns/<campaign_id>")
    def campaign(campaign_id: str) -> str:
        context = pages.campaign_context(dashboards(), campaign_id, samples)
        context["sending"] = sending(campaign_id) if sending else None
        if delivery is not None:
            with suppress(NotFound):  # events without a campaign document: no ledger view
                context = pages.with_delivery(context, delivery(campaign_id))
        return show("campaign.html", "campaign", **context)

    @app.get("/deliverability")
    def deliverability() -> str:
        context = pages.deliverability_context(dashboards(), _days())
        return show("deliverability.html", "deliverability", **context)

    @app.get("/growth")
    def growth() -> str:
        return show("growth.html", "growth", **pages.growth_context(dashboards(), _days()))

    @app.get("/triggers")
    def trigger_report() -> str:
        if triggers is None:
            raise NotFound("triggers are not configured in this deployment")
        return show("triggers.html", "triggers", **triggers())

    _register_errors(app, show)
    return app


def _days() -> int:
    raw = flask.request.args.get("days", str(DEFAULT_DAYS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise InvalidInput(f"days must be a whole number from 1 to {MAX_DAYS}, not {raw!r}")
    return int(raw)


def _register_errors(app: flask.Flask, show: Callable[..., str]) -> None:
    def page(status: int, title: str, message: str) -> tuple[str, int]:
        return show("error.html", "error", title=title, message=message), status

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> tuple[str, int]:
        return page(404, "Not found", str(exc))

    @app.errorhandler(404)
    def no_route(exc: Exception) -> tuple[str, int]:
        return page(404, "Not found", "There is no dashboard page at this address.")

    @app.errorhandler(HTTPException)
    def refused(exc: HTTPException) -> Any:
        """405 (the dashboard only answers GET) and other protocol errors keep their status
        and headers (Allow), instead of falling to the catch-all 500 below."""
        response = exc.get_response()
        response.set_data(page(exc.code or 400, exc.name, exc.description or exc.name)[0])
        response.mimetype = "text/html"
        return response

    @app.errorhandler(InvalidInput)
    def bad_input(exc: InvalidInput) -> tuple[str, int]:
        return page(400, "Bad request", str(exc))

    @app.errorhandler(TransientError)
    def unavailable(exc: TransientError) -> tuple[str, int]:
        log.warning("dashboard: warehouse unavailable: %s", exc)
        return page(503, "Try again shortly", "The event warehouse did not answer in time.")

    @app.errorhandler(MailpipeError)
    def failed(exc: MailpipeError) -> tuple[str, int]:
        log.error("dashboard: %s", exc)
        return page(500, "Something went wrong", "The figures could not be computed.")

    @app.errorhandler(Exception)
    def crashed(exc: Exception) -> tuple[str, int]:
        log.exception("dashboard: unexpected error")
        return page(500, "Something went wrong", "The figures could not be computed.")
