"""The sending domain's checklist in the browser: `mailpipe doctor` through the same service,
with the same checks, verdicts and fixes. Reading DNS changes nothing, so the form is a GET."""

from __future__ import annotations

import flask

from shared.console.render import Routes, container, render
from shared.domain.errors import MailpipeError

routes = Routes()


def register(bp: flask.Blueprint) -> None:
    routes.register(bp)


@routes.get("/doctor")
def doctor() -> str:
    asked = {name: flask.request.args.get(name, "").strip() for name in ("domain", "ip", "dns")}
    report, problem = None, None
    if asked["domain"]:
        try:
            checks = container().domain_doctor(asked["dns"])
            report = checks.examine(asked["domain"], asked["ip"] or None)
        except MailpipeError as exc:  # a bad name, a DNS server that does not answer
            problem = str(exc)
    return render("doctor.html", "doctor", asked=asked, report=report, problem=problem)
