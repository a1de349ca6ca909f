"""The import screen: upload a CSV of subscribers and import it with the service the CLI's
`mailpipe subscribers import` and the admin API's POST /subscribers/import call."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import flask

from shared.console.render import Routes, container, render
from shared.domain.errors import InvalidInput
from shared.services.subscriber_import import ImportOptions

MAX_UPLOAD = 10 * 1024 * 1024


routes = Routes()


def register(bp: flask.Blueprint) -> None:
    routes.register(bp)


@routes.get("/import")
def imports() -> str:
    return render("import.html", "import", summary=None, error=None)


@routes.post("/import")
def run_import() -> Any:
    try:
        name, data = _upload()
        text = _text(data)
        options = ImportOptions(name[:200], hashlib.sha256(data).hexdigest(),
                                bool(flask.request.form.get("confirmed_consent")))  # fmt: skip
        summary = container().subscriber_import.run(io.StringIO(text, newline=""), options)
    except InvalidInput as exc:
        return render("import.html", "import", summary=None, error=str(exc)), 400
    return render("import.html", "import", summary=summary, error=None)


def _upload() -> tuple[str, bytes]:
    upload = flask.request.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidInput("choose a CSV file to import", field="file")
    data = upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise InvalidInput(f"the file is larger than {MAX_UPLOAD // 1024 // 1024} MB", "file")
    return upload.filename, data


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the file is not UTF-8 ({exc.reason} at byte {exc.start})",
                           field="file") from exc  # fmt: skip
