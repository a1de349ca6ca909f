"""HTML pages for people (signup form, confirmation, unsubscribe, preferences) from templates/."""

from __future__ import annotations

from typing import Any

import flask

from shared.bootstrap import container
from shared.domain import template_names


def render_page(name: str, status: int = 200, **context: Any) -> flask.Response:
    html = container().templates.page(name).render(**context)
    return flask.Response(html, status=status, mimetype="text/html")


def render_message(
    title: str,
    message: str,
    status: int = 200,
    link: tuple[str | None, str] = (None, ""),
) -> flask.Response:
    """A short page; `link` (href, label) is where a person goes next, when there is one."""
    href, label = link
    return render_page(template_names.MESSAGE_PAGE, status, title=title, message=message,
                       link_href=href, link_label=label)  # fmt: skip
