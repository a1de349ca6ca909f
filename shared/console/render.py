"""Rendering console pages: templates/console/ first, then the dashboard's templates (the same
base page, look and filters), with the sign-in state, CSRF token and flash messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import flask
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from shared.console import auth, campaign_form
from shared.dashboard import formatting, pages
from shared.topology import REPO_ROOT

if TYPE_CHECKING:
    from shared.bootstrap import Container

F = TypeVar("F", bound=Callable[..., Any])

TEMPLATES = REPO_ROOT / "templates" / "console"


class Chrome:
    """What the dashboard's base page adds when it is served by the console: the console's
    stylesheet and script, and its navigation (called while a page renders)."""

    def head(self) -> Markup:
        if not _serving():
            return Markup("")
        css = flask.url_for("console.static", filename="console.css")
        js = flask.url_for("console.static", filename="console.js")
        return Markup(f'<link rel="stylesheet" href="{css}">\n<script src="{js}" defer></script>')

    def nav(self, page: str) -> Markup:
        if not _serving():
            return Markup("")
        return Markup(environment().get_template("_nav.html").render(**_state(page)))


def _serving() -> bool:
    """A console app serves this request (the dashboard app alone shares the templates)."""
    return bool(flask.has_request_context() and "console" in flask.current_app.blueprints)


CHROME = Chrome()


@cache
def environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES), FileSystemLoader(pages.TEMPLATES)]),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pages.environment().filters)
    env.filters["epoch"] = epoch
    env.filters["segment"] = campaign_form.describe_segment
    env.globals["console"] = CHROME
    return env


def epoch(value: float | None) -> str:
    """Epoch seconds as the dashboards show times (UTC)."""
    return formatting.when(datetime.fromtimestamp(value, UTC) if value else None)


def render(template: str, page: str, **context: Any) -> str:
    return environment().get_template(template).render(**_state(page), **context)


def _state(page: str) -> dict[str, Any]:
    return {
        "link": flask.url_for,
        "page": page,
        "csrf": auth.csrf_token(),
        "role": auth.current_role(),
        "flashes": flask.get_flashed_messages(with_categories=True),
        "generated_at": datetime.now(UTC),
    }


def container() -> Container:
    """The services behind the console app serving this request."""
    services: Callable[[], Container] = flask.current_app.config["CONSOLE_SERVICES"]
    return services()


class Routes:
    """A module's views, declared at module level and added to the console's blueprint."""

    def __init__(self) -> None:
        self._rules: list[tuple[str, Callable[..., Any], tuple[str, ...]]] = []

    def route(self, rule: str, methods: Sequence[str] = ("GET",)) -> Callable[[F], F]:
        def add(view: F) -> F:
            self._rules.append((rule, view, tuple(methods)))
            return view

        return add

    def get(self, rule: str) -> Callable[[F], F]:
        return self.route(rule)

    def post(self, rule: str) -> Callable[[F], F]:
        return self.route(rule, ("POST",))

    def register(self, bp: flask.Blueprint) -> None:
        for rule, view, methods in self._rules:
            bp.add_url_rule(rule, view.__name__, view, methods=list(methods))
