"""/inbox: what the local SMTP sink received, newest first, with headers and the HTML shown."""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from email.message import EmailMessage
from pathlib import Path

import flask
from jinja2 import Environment, FileSystemLoader, select_autoescape

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
)


_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
_LINKS_OUTSIDE = '<base target="_blank">'


def links_open_outside(html: str) -> str:
    """The mail's HTML with links that open in a new tab, not inside the inbox's frame (a
    <base> in the mail's own head, where a mail client would put it)."""
    found = _HEAD.search(html)
    if found is None:
        return _LINKS_OUTSIDE + html
    return html[: found.end()] + _LINKS_OUTSIDE + html[found.end() :]


def _open(maildir: Path) -> mailbox.Maildir:
    return mailbox.Maildir(str(maildir), create=True)


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage objects
    return message


def _delivered_at(key: str) -> tuple[float, str]:
    head = key.split(".", 1)[0]
    return (float(head) if head.isdigit() else 0.0, key)


def list_messages(maildir: Path, limit: int = 200) -> list[dict[str, str]]:
    box = _open(maildir)
    # Maildir names begin with the delivery time in seconds, then a sequence: newest first.
    items = sorted(((_delivered_at(key), key) for key in box.iterkeys()), reverse=True)
    out = []
    for _, key in items[:limit]:
        msg = _parse(box.get_bytes(key))
        out.append(
            {
                "key": key,
                "to": str(msg["To"] or ""),
                "subject": str(msg["Subject"] or ""),
                "date": str(msg["Date"] or ""),
                "message_id": str(msg["Message-ID"] or ""),
            }
        )
    return out


def create_inbox_app(maildir: Path) -> flask.Flask:
    app = flask.Flask("inbox")

    @app.get("/")
    def index() -> str:
        box = _open(maildir)
        return _TEMPLATES.get_template("inbox.html").render(
            messages=list_messages(maildir), total=len(box)
        )

    @app.get("/<key>")
    def show(key: str) -> flask.Response | str:
        box = _open(maildir)
        try:
            msg = _parse(box.get_bytes(key))
        except KeyError:
            return flask.Response("no such message", status=404, mimetype="text/plain")
        html_part = msg.get_body(("html",))
        text_part = msg.get_body(("plain",))
        return _TEMPLATES.get_template("inbox_message.html").render(
            subject=str(msg["Subject"] or "(no subject)"),
            headers=list(msg.items()),
            html=links_open_outside(html_part.get_content()) if html_part else "",
            text=text_part.get_content() if text_part else "",
        )

    @app.get("/<key>/raw")
    def raw(key: str) -> flask.Response:
        try:
            data = _open(maildir).get_bytes(key)
        except KeyError:
            return flask.Response("no such message", status=404, mimetype="text/plain")
        return flask.Response(data, mimetype="message/rfc822")

    return app
