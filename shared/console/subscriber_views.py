"""Subscriber pages: search, one subscriber (status, lists, attributes, consent, the mail they
got and what they did), edits, unsubscribe, suppress, GDPR export and erase (with a
confirmation step), and the suppression list."""

from __future__ import annotations

import json
from typing import Any

import flask

from shared.bootstrap import Container
from shared.console.render import Routes, container, render
from shared.domain.errors import InvalidInput, TransientError

routes = Routes()


def register(bp: flask.Blueprint) -> None:
    routes.register(bp)


@routes.get("/subscribers")
def subscribers() -> str:
    query = flask.request.args.get("q", "")
    result = container().subscriber_admin.search(query) if query.strip() else None
    return render("subscribers.html", "subscribers", query=query, result=result)


@routes.get("/subscribers/<subscriber_id>")
def subscriber(subscriber_id: str) -> Any:
    return _profile(container(), subscriber_id, {})


@routes.post("/subscribers/<subscriber_id>/edit")
def edit_subscriber(subscriber_id: str) -> Any:
    form = flask.request.form
    c = container()
    try:
        attributes = _attributes(form.get("attributes", ""))
        c.subscriber_admin.edit(subscriber_id, _split(form.get("lists", "")),
                                _split(form.get("tags", "")), attributes)  # fmt: skip
    except InvalidInput as exc:
        return _profile(c, subscriber_id, {exc.field or "attributes": str(exc)}, form, 400)
    flask.flash("Saved lists, tags and attributes.")
    return _back(subscriber_id)


@routes.post("/subscribers/<subscriber_id>/unsubscribe")
def unsubscribe_subscriber(subscriber_id: str) -> Any:
    container().subscriber_admin.unsubscribe(subscriber_id)
    flask.flash("Unsubscribed; the address is on the suppression list.")
    return _back(subscriber_id)


@routes.post("/subscribers/<subscriber_id>/suppress")
def suppress_subscriber(subscriber_id: str) -> Any:
    container().subscriber_admin.suppress(subscriber_id, flask.request.form.get("note", ""))
    flask.flash("Suppressed: this address is never mailed again.")
    return _back(subscriber_id)


@routes.get("/subscribers/<subscriber_id>/export")
def export_subscriber(subscriber_id: str) -> Any:
    c = container()
    email = c.subscriber_admin.get(subscriber_id).email
    data = json.dumps(c.gdpr.export(email), indent=2, sort_keys=True, default=str,
                      ensure_ascii=False)  # fmt: skip
    response = flask.Response(data, mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{subscriber_id}.json"'
    return response


@routes.route("/subscribers/<subscriber_id>/erase", methods=["GET", "POST"])
def erase_subscriber(subscriber_id: str) -> Any:
    c = container()
    email = c.subscriber_admin.get(subscriber_id).email
    if flask.request.method == "GET":
        return render("erase.html", "subscribers", subscriber_id=subscriber_id, email=email,
                      error=None)  # fmt: skip
    if flask.request.form.get("confirm", "").strip().lower() != email.lower():
        message = "Type the address exactly to confirm; nothing was erased."
        page = render("erase.html", "subscribers", subscriber_id=subscriber_id, email=email,
                      error=message)  # fmt: skip
        return page, 400
    try:
        report = c.gdpr.erase(email)
    except TransientError as exc:
        flask.flash(str(exc), "error")
        return _back(subscriber_id)
    flask.flash(f"Erased every record of {email}; a hashed suppression entry keeps it "
                f"from being mailed again ({_counts(report)}).")  # fmt: skip
    return flask.redirect(flask.url_for("console.subscribers"), 303)


@routes.get("/suppressions")
def suppressions() -> str:
    c = container()
    after = flask.request.args.get("after") or None
    rows = c.subscriber_admin.suppression_list(limit=200, after=after)
    check = flask.request.args.get("email", "").strip()
    reason: str | None = None
    error: str | None = None
    if check:
        try:
            reason = c.subscriber_admin.suppression_reason(check) or "not suppressed"
        except InvalidInput as exc:
            error = str(exc)
    return render("suppressions.html", "suppressions", rows=rows, check=check,
                  reason=reason, error=error)  # fmt: skip


def _profile(
    c: Container,
    subscriber_id: str,
    errors: dict[str, str],
    form: Any = None,
    status: int = 200,
) -> Any:
    person = c.subscriber_admin.get(subscriber_id)  # NotFound: the 404 page
    try:
        held = c.gdpr.export(person.email)
    except TransientError:
        held = {"send_ledger": [], "warehouse_events": []}
    events = sorted(held.get("warehouse_events") or [], key=lambda e: str(e.get("occurred_at")),
                    reverse=True)  # fmt: skip
    attributes = json.dumps(person.attributes, indent=2, ensure_ascii=False)
    page = render("subscriber.html", "subscribers", person=person, errors=errors,
                  ledger=held.get("send_ledger") or [], events=events[:200], form=form or {},
                  attributes=attributes)  # fmt: skip
    return page, status


def _back(subscriber_id: str) -> Any:
    return flask.redirect(flask.url_for("console.subscriber", subscriber_id=subscriber_id), 303)


def _split(text: str) -> list[str]:
    return [part for part in (p.strip() for p in text.replace("\n", ",").split(",")) if part]


def _attributes(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError as exc:
        raise InvalidInput(f"attributes are not valid JSON: {exc}", field="attributes") from exc


def _counts(report: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(report.items()))
