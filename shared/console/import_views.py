"""The import screen: upload another tool's export, see its columns mapped to Mailpipe's
(changeable) with a preview of the first rows and the rows that would be rejected, then start
the import and watch its progress. The import is the one `mailpipe subscribers import` and the
admin API run (shared/services/import_mapping.py renames the columns in front of it).

Locally the import runs in a thread of the runner and the progress page refreshes itself (no
script needed); in GCP it runs within the request and the page shows the result."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import flask

from shared.console.render import Routes, container, render
from shared.domain.errors import InvalidInput, MailpipeError, NotFound
from shared.services.import_mapping import IGNORE, Inspection, suggest
from shared.services.subscriber_import import KNOWN_COLUMNS, ImportSummary

MAX_UPLOAD = 10 * 1024 * 1024
routes = Routes()


@dataclass
class Job:
    """One import started from the console (kept by this process)."""

    id: str
    upload_id: str
    total: int
    done: int = 0
    summary: ImportSummary | None = None
    error: str | None = None
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


JOBS: dict[str, Job] = {}


def register(bp: flask.Blueprint) -> None:
    routes.register(bp)


@routes.get("/import")
def imports() -> str:
    return render("import.html", "import", error=None)


@routes.post("/import")
def upload_import() -> Any:
    upload = flask.request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise InvalidInput("choose a CSV file to import", field="file")
        data = upload.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise InvalidInput(f"the file is larger than {MAX_UPLOAD // 1024 // 1024} MB", "file")
        upload_id = container().import_mapping.upload(upload.filename, data)
    except InvalidInput as exc:
        return render("import.html", "import", error=str(exc)), 400
    return flask.redirect(flask.url_for("console.import_mapping", upload_id=upload_id), 303)


@routes.get("/import/<upload_id>")
def import_mapping(upload_id: str) -> str:
    """The file's columns mapped (as suggested, or as the form chose), first rows, rejects."""
    mapper = container().import_mapping
    args = flask.request.args
    columns = mapper.inspect(upload_id, None).columns
    mapping = _mapping(columns, args) if "map-0" in args else None
    return _mapping_page(mapper.inspect(upload_id, mapping), None)


@routes.post("/import/<upload_id>/start")
def start_import(upload_id: str) -> Any:
    c = container()
    form = flask.request.form
    inspection = c.import_mapping.inspect(upload_id, None)
    mapping = _mapping(inspection.columns, form)
    consent = bool(form.get("confirmed_consent"))
    checked = c.import_mapping.inspect(upload_id, mapping)
    if checked.error:
        return _mapping_page(checked, checked.error), 400
    job = Job(uuid.uuid4().hex[:16], upload_id, checked.rows)
    JOBS[job.id] = job
    if c.settings.is_local:
        threading.Thread(target=_run, args=(c, job, mapping, consent), daemon=True).start()
    else:
        _run(c, job, mapping, consent)
    return flask.redirect(flask.url_for("console.import_progress", job_id=job.id), 303)


@routes.get("/import/jobs/<job_id>")
def import_progress(job_id: str) -> str:
    job = JOBS.get(job_id)
    if job is None:
        raise NotFound(f"no import {job_id!r} in this process")
    return render("import_progress.html", "import", job=job)


def _mapping_page(inspection: Inspection, error: str | None) -> str:
    choices = [IGNORE, *KNOWN_COLUMNS]
    options = {c: [*choices, *([suggest(c)] if suggest(c) not in choices else [])]
               for c in inspection.columns}  # fmt: skip
    for column, target in inspection.mapping.items():
        if target not in options[column]:
            options[column].append(target)
    return render("import_mapping.html", "import", inspection=inspection, options=options,
                  error=error or inspection.error)  # fmt: skip


def _mapping(columns: list[str], values: Any) -> dict[str, str]:
    return {c: str(values.get(f"map-{i}", IGNORE)) for i, c in enumerate(columns)}


def _run(c: Any, job: Job, mapping: dict[str, str], consent: bool) -> None:
    def progress(rows: int) -> None:
        job.done = rows

    try:
        job.summary = c.import_mapping.run(job.upload_id, mapping, consent, on_row=progress)
    except MailpipeError as exc:
        job.error = str(exc)
    finally:
        job.finished = True
