"""Template pages: the list, a template's source and earlier versions, and editing or uploading
a new version with a preview (sample subscriber, desktop and phone width) whose errors name the
file and line. Saving refuses a version that does not render, and keeps the one it replaces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flask

from shared.bootstrap import Container
from shared.console.render import Routes, container, render
from shared.domain.errors import InvalidInput
from shared.services.template_library import Draft

MAX_UPLOAD = 500_000


routes = Routes()


def register(bp: flask.Blueprint) -> None:
    routes.register(bp)


@routes.get("/templates")
def templates() -> str:
    library = container().template_library
    rows = [(name, len(library.versions(name))) for name in library.names()]
    return render("templates.html", "templates", rows=rows, error=None)


@routes.post("/templates")
def upload_template() -> Any:
    """A new template (or a new version of one) from a name and an uploaded file."""
    name = flask.request.form.get("name", "").strip()
    try:
        source = _uploaded() or ""
        if not source:
            raise InvalidInput("choose an .html file to upload", field="file")
        container().template_library.save(name, source)
    except InvalidInput as exc:
        library = container().template_library
        rows = [(n, len(library.versions(n))) for n in library.names()]
        return render("templates.html", "templates", rows=rows, error=str(exc)), 400
    flask.flash(f"Saved a new version of {name}.")
    return flask.redirect(flask.url_for("console.template", name=name), 303)


@routes.get("/templates/<name>")
def template(name: str) -> Any:
    library = container().template_library
    source = library.source(name)  # NotFound: the 404 page
    sample = flask.request.args.get("sample", "")
    return _editor(container(), name, source, library.draft(name, source, sample), None)


@routes.post("/templates/<name>")
def edit_template(name: str) -> Any:
    """do=preview shows the draft; do=save saves it when it renders."""
    form = flask.request.form
    c = container()
    source = _uploaded() or form.get("source", "")
    try:
        if form.get("do") == "save":
            c.template_library.save(name, source)
            flask.flash(f"Saved a new version of {name}; the previous one is kept below.")
            return flask.redirect(flask.url_for("console.template", name=name), 303)
        draft = c.template_library.draft(name, source, form.get("sample", ""))
    except InvalidInput as exc:
        draft = c.template_library.draft(name, source, form.get("sample", ""))
        return _editor(c, name, source, draft, str(exc)), 400
    return _editor(c, name, source, draft, None)


@routes.post("/templates/<name>/draft")
def template_draft(name: str) -> Any:
    """The live preview (the console's script): the draft as JSON."""
    form = flask.request.form
    try:
        draft = container().template_library.draft(name, form.get("source", ""),
                                                  form.get("sample", ""))  # fmt: skip
    except InvalidInput as exc:
        return {"ok": False, "summary": str(exc), "problems": [], "html": ""}, 400
    return draft_json(draft)


@routes.get("/templates/<name>/versions/<path:key>")
def template_version(name: str, key: str) -> str:
    source = container().template_library.version_source(name, key)
    return render("template_version.html", "templates", name=name, key=key, source=source)


def draft_json(draft: Draft) -> dict[str, Any]:
    report = draft.report
    return {
        "ok": report.ok,
        "summary": report.summary(),
        "problems": [
            {"file": p.file, "line": p.line, "message": p.describe()} for p in report.problems
        ],
        "html": draft.message.html if draft.message else "",
        "subject": draft.message.subject if draft.message else "",
    }


def _editor(c: Container, name: str, source: str, draft: Draft, error: str | None) -> str:
    library = c.template_library
    return render("template.html", "templates", name=name, source=source, draft=draft,
                  versions=library.versions(name), error=error,
                  samples=draft.report.samples)  # fmt: skip


def _uploaded() -> str | None:
    files: Mapping[str, Any] = flask.request.files
    upload = files.get("file")
    if upload is None or not upload.filename:
        return None
    data = upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise InvalidInput(f"the file is larger than {MAX_UPLOAD:,} bytes", field="file")
    try:
        return str(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the file is not UTF-8 text ({exc.reason})", field="file") from exc
