"""The import screen: upload a file (another tool's export), see its columns mapped to
Mailpipe's fields (changeable) with the first rows as they would import and the rows that would
be rejected, start it, then follow a progress bar. Everything is ImportService's, the service
`mailpipe subscribers import` and the admin API's /subscribers/imports routes call; the import
itself runs in the pipeline (the imports function), so the page only reads its progress and
refreshes itself while it runs (no script needed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flask

from shared.console.render import Routes, container, render
from shared.domain import import_format as fmt
from shared.domain.errors import Conflict, InvalidInput
from shared.repositories.imports import FINISHED, UPLOADED

MAX_UPLOAD = 32 * 1024 * 1024  # the admin function's request limit; larger: the bucket
routes = Routes()


def register(bp: flask.Blueprint) -> None:
    routes.register(bp)


@routes.get("/import")
def imports() -> str:
    return render("import.html", "import", error=None, recent=container().imports.recent(20))


@routes.post("/import")
def upload_import() -> Any:
    upload = flask.request.files.get("file")
    c = container()
    try:
        if upload is None or not upload.filename:
            raise InvalidInput("choose a CSV file to import", field="file")
        data = upload.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise InvalidInput(f"the file is larger than {MAX_UPLOAD // 1024 // 1024} MB", "file")
        job = c.imports.upload(data, upload.filename)
    except InvalidInput as exc:
        page = render("import.html", "import", error=str(exc), recent=c.imports.recent(20))
        return page, 400
    return flask.redirect(flask.url_for("console.import_job", import_id=job.id), 303)


@routes.get("/import/<import_id>")
def import_job(import_id: str) -> Any:
    """Before it starts: the mapping (as suggested, or as the form chose) and the preview;
    afterwards: its progress."""
    service = container().imports
    job = service.status(import_id)  # NotFound: the 404 page
    if job.status != UPLOADED:
        return render("import_progress.html", "import", job=job, finished=job.status in FINISHED)
    headers = service.inspect(import_id).headers
    chosen = _mapping(headers, flask.request.args) if "map-0" in flask.request.args else None
    return _mapping_page(import_id, chosen, None)


@routes.post("/import/<import_id>/start")
def start_import(import_id: str) -> Any:
    service = container().imports
    form = flask.request.form
    mapping = _mapping(service.inspect(import_id).headers, form)
    try:
        service.start(import_id, mapping, bool(form.get("confirmed_consent")))
    except (InvalidInput, Conflict) as exc:
        status = 409 if isinstance(exc, Conflict) else 400
        return _mapping_page(import_id, mapping, str(exc)), status
    return flask.redirect(flask.url_for("console.import_job", import_id=import_id), 303)


@routes.get("/import/<import_id>/rejects")
def import_rejects(import_id: str) -> Any:
    data = container().imports.rejects(import_id)  # NotFound while there is none
    response = flask.Response(data, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{import_id}-rejects.csv"'
    return response


def _mapping_page(import_id: str, mapping: dict[str, str] | None, error: str | None) -> str:
    inspection = container().imports.inspect(import_id, mapping)
    options = {h: _options(h, inspection.mapping.get(h, fmt.IGNORE)) for h in inspection.headers}
    return render("import_mapping.html", "import", inspection=inspection, options=options,
                  error=error or inspection.error or None)  # fmt: skip


def _options(header: str, chosen: str) -> list[str]:
    """The fields a column may go to: the known ones, its attribute, and what is chosen."""
    found = [f for f in fmt.FIELDS if f != "attributes"]
    for extra in (fmt.default_target(header), chosen):
        if extra not in found:
            found.append(extra)
    return found


def _mapping(headers: list[str], values: Mapping[str, str]) -> dict[str, str]:
    return {h: str(values.get(f"map-{i}", fmt.IGNORE)) for i, h in enumerate(headers)}
