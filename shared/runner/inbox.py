"""/inbox: what the local SMTP sink received, newest first, with headers and the HTML shown."""

from __future__ import annotations

import email
import email.policy
import mailbox
from email.message import EmailMessage
from pathlib import Path

import flask
from jinja2 import Environment, select_autoescape

_env = Environment(autoescape=select_autoescape(default=True))

_LIST = _env.from_string("""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Inbox</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;color:#1f2933}table{border-collapse:collapse;width:100%}
td,th{padding:8px;border-bottom:1px solid #e4e7eb;text-align:left}a{color:#2563eb}</style></head><body>
<h1>Inbox <small>({{ total }} messages)</small></h1>
<p><a href="/signup">Sign up</a> · <a href="/dashboard">Dashboard</a></p>
<table><tr><th>Received</th><th>To</th><th>Subject</th></tr>
{% for m in messages %}<tr><td>{{ m.date }}</td><td>{{ m.to }}</td>
<td><a href="/inbox/{{ m.key }}">{{ m.subject }}</a></td></tr>{% endfor %}
</table>{% if not messages %}<p>Nothing yet. <a href="/signup">Sign up</a> to get a confirmation mail.</p>{% endif %}
</body></html>""")

_SHOW = _env.from_string("""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{{ subject }}</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;color:#1f2933}pre{background:#f4f5f7;padding:12px;
white-space:pre-wrap}iframe{width:100%;height:600px;border:1px solid #e4e7eb}</style></head><body>
<p><a href="/inbox">&larr; Inbox</a></p><h1>{{ subject }}</h1>
<h2>Headers</h2><pre>{% for k, v in headers %}{{ k }}: {{ v }}
{% endfor %}</pre>
{% if html %}<h2>HTML</h2><iframe sandbox="" srcdoc="{{ html }}"></iframe>{% endif %}
<h2>Text</h2><pre>{{ text }}</pre></body></html>""")


def _open(maildir: Path) -> mailbox.Maildir:
    return mailbox.Maildir(str(maildir), create=True)


def _parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def list_messages(maildir: Path, limit: int = 200) -> list[dict[str, str]]:
    box = _open(maildir)
    items = []
    for key in box.keys():
        path = maildir / box._lookup(key)  # type: ignore[attr-defined]
        items.append((path.stat().st_mtime, key))
    items.sort(reverse=True)
    out = []
    for _, key in items[:limit]:
        msg = _parse(box.get_bytes(key))
        out.append({"key": key, "to": str(msg["To"] or ""), "subject": str(msg["Subject"] or ""),
                    "date": str(msg["Date"] or ""), "message_id": str(msg["Message-ID"] or "")})  # fmt: skip
    return out


def create_inbox_app(maildir: Path) -> flask.Flask:
    app = flask.Flask("inbox")

    @app.get("/")
    def index() -> str:
        box = _open(maildir)
        return _LIST.render(messages=list_messages(maildir), total=len(box))

    @app.get("/<key>")
    def show(key: str) -> flask.Response | str:
        box = _open(maildir)
        try:
            msg = _parse(box.get_bytes(key))
        except KeyError:
            return flask.Response("no such message", status=404, mimetype="text/plain")
        html_part = msg.get_body(("html",))
        text_part = msg.get_body(("plain",))
        return _SHOW.render(
            subject=str(msg["Subject"] or "(no subject)"),
            headers=list(msg.items()),
            html=html_part.get_content() if html_part else "",
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
