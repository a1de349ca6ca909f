"""Campaign pages: the list, the new-campaign form with its live audience count, a campaign's
settings, preview, figures and actions. Each action calls CampaignService, as
`mailpipe campaign ...` and the admin API do; a refusal is shown next to the action's form."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import available_timezones

import flask
import jinja2
from markupsafe import escape

from shared.bootstrap import Container
from shared.console import campaign_form
from shared.console.render import Routes, container, render
from shared.domain.campaign import DRAFT, SCHEDULED, STATUSES, Campaign
from shared.domain.errors import Conflict, InvalidInput, MailpipeError, NotFound, TransientError
from shared.services.campaigns import CampaignService

ERRORS = (InvalidInput, Conflict)
ZONES = sorted(available_timezones())
# Campaign actions, each calling the service the CLI command of the same name calls.
Action = Callable[[CampaignService, str, Mapping[str, str]], tuple[str, str | None]]


routes = Routes()


def register(bp: flask.Blueprint) -> None:
    routes.register(bp)


@routes.get("/campaigns")
def campaigns() -> str:
    c = container()
    chosen = [s for s in flask.request.args.getlist("status") if s in STATUSES]
    query = flask.request.args.get("q", "").strip()
    found = c.campaign_service.list_campaigns(chosen, limit=500)
    if query:
        found = [x for x in found if query.lower() in f"{x.name} {x.id}".lower()]
    figures = _figures(c)
    rows = [(x, figures.get(x.id), _dispatched(x)) for x in reversed(found)]
    return render("campaigns.html", "campaigns", rows=rows, statuses=STATUSES,
                  chosen=chosen, query=query)  # fmt: skip


@routes.route("/campaigns/new", methods=["GET", "POST"])
def new_campaign() -> Any:
    if flask.request.method == "GET":
        return _new_form(container(), {}, {})
    return _create(container(), flask.request.form)


@routes.get("/campaigns/audience")
def audience_count() -> Any:
    """The live count: the form's segment and A/B fields as query parameters."""
    args = flask.request.args
    try:
        estimate = container().audience_estimator.estimate(
            campaign_form.segment_from_form(args), campaign_form.ab_from_form(args)
        )
    except InvalidInput as exc:
        return {"error": str(exc), "field": exc.field}, 400
    return {**estimate.to_doc(), "text": audience_text(estimate.to_doc())}


@routes.get("/campaigns/<campaign_id>/manage")
def manage_campaign(campaign_id: str) -> Any:
    return _manage(container(), campaign_id, {})


@routes.get("/campaigns/<campaign_id>/message")
def preview_message(campaign_id: str) -> Any:
    args = flask.request.args
    service = container().campaign_service
    try:
        email = service.preview_message(campaign_id, args.get("variant") or None,
                                        args.get("sample", ""))  # fmt: skip
        body = email.html
    except NotFound:
        raise
    except (MailpipeError, jinja2.TemplateError, ValueError) as exc:
        body = f"<p style='color:#b91c1c;font-family:sans-serif'>{escape(str(exc))}</p>"
    response = flask.Response(body, mimetype="text/html")
    # The message is shown, never run: no scripts, no forms, nothing fetched but images.
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src data: http: https:; style-src 'unsafe-inline'"
    )
    return response


@routes.post("/campaigns/<campaign_id>/<action>")
def campaign_action(campaign_id: str, action: str) -> Any:
    handler = ACTIONS.get(action)
    if handler is None:
        raise NotFound(f"no campaign action {action!r}")
    c = container()
    try:
        message, target = handler(c.campaign_service, campaign_id, flask.request.form)
    except ERRORS as exc:
        status = 409 if isinstance(exc, Conflict) else 400
        return _manage(c, campaign_id, {action: str(exc)}, status)
    flask.flash(message)
    where = target or campaign_id
    if where == "-":
        return flask.redirect(flask.url_for("console.campaigns"), 303)
    return flask.redirect(flask.url_for("console.manage_campaign", campaign_id=where), 303)


# -- actions ---------------------------------------------------------------------------------


def _send(service: CampaignService, cid: str, form: Mapping[str, str]) -> tuple[str, str | None]:
    started = service.send_now(cid)
    return f"Campaign {started.id} is sending (phase {started.phase}; preview ok).", None


def _schedule(s: CampaignService, cid: str, form: Mapping[str, str]) -> tuple[str, str | None]:
    at = campaign_form.schedule_moment(form.get("at", ""), form.get("zone", "UTC"))
    scheduled = s.schedule(cid, at)
    return (f"Scheduled {scheduled.id} for {at} ({form.get('zone') or 'UTC'}; preview ok). "
            "The sweep starts it within a few minutes of that time."), None  # fmt: skip


def _pause(s: CampaignService, cid: str, form: Mapping[str, str]) -> tuple[str, str | None]:
    paused = s.pause(cid)
    return f"Paused {paused.id} (was {paused.paused_from}).", None


def _resume(s: CampaignService, cid: str, form: Mapping[str, str]) -> tuple[str, str | None]:
    resumed, republished = s.resume(cid)
    message = f"Resumed {resumed.id} ({resumed.status}); {republished} parked batch(es) requeued."
    return message, None


def _cancel(s: CampaignService, cid: str, form: Mapping[str, str]) -> tuple[str, str | None]:
    return f"Cancelled {s.cancel(cid).id}; undelivered batches will be skipped.", None


def _test(s: CampaignService, cid: str, form: Mapping[str, str]) -> tuple[str, str | None]:
    sent = s.test_send(cid, form.get("to", ""), form.get("variant") or None)
    return "; ".join(f"Queued [TEST] message to {e.recipient}: {e.subject}" for e in sent), None


def _duplicate(s: CampaignService, cid: str, form: Mapping[str, str]) -> tuple[str, str | None]:
    copy = s.duplicate(cid)
    return f"Created campaign {copy.id} (draft), a copy of {cid}.", copy.id


def _delete(s: CampaignService, cid: str, form: Mapping[str, str]) -> tuple[str, str | None]:
    if form.get("confirm") != "yes":
        raise InvalidInput("tick the box to confirm deleting this draft", field="confirm")
    s.delete_draft(cid)
    return f"Deleted draft {cid}.", "-"


def _pick(s: CampaignService, cid: str, form: Mapping[str, str]) -> tuple[str, str | None]:
    variant = form.get("variant", "")
    picked = s.pick_winner(cid, variant)
    when = "now" if picked.phase == "remainder" else "once the test phase is dispatched"
    return f"Winner of {picked.id}: {variant}; the remainder is sent {when}.", None


ACTIONS: dict[str, Action] = {
    "send": _send, "schedule": _schedule, "pause": _pause, "resume": _resume,
    "cancel": _cancel, "test": _test, "duplicate": _duplicate, "delete": _delete,
    "pick-winner": _pick,
}  # fmt: skip


# -- pages -----------------------------------------------------------------------------------


def _new_form(c: Container, form: Mapping[str, str], errors: dict[str, str],
              estimate: dict[str, Any] | None = None, status: int = 200) -> Any:  # fmt: skip
    page = render("campaign_new.html", "new-campaign", form=form, errors=errors,
                  templates=c.template_library.names(), kinds=campaign_form.KIND_LABELS,
                  ops=campaign_form.OPS, groups=campaign_form.GROUPS, rows=campaign_form.ROWS,
                  variants=campaign_form.VARIANTS, zones=ZONES, estimate=estimate,
                  estimate_text=audience_text(estimate) if estimate else "",
                  sender=c.settings.sender)  # fmt: skip
    return page, status


def _create(c: Container, form: Mapping[str, str]) -> Any:
    try:
        spec = campaign_form.spec_from_form(form)
        if form.get("do") == "count":  # the no-script way to see the audience count
            estimate = c.audience_estimator.estimate(spec.get("segment"), spec.get("ab"))
            return _new_form(c, form, {}, estimate.to_doc())
        created = c.campaign_service.create(spec)
    except ERRORS as exc:
        field = getattr(exc, "field", None) or "name"
        return _new_form(c, form, {field: str(exc)}, status=400)
    flask.flash(f"Created campaign {created.id} (draft).")
    if form.get("when") == "schedule":
        try:
            message, _ = _schedule(c.campaign_service, created.id, form)
            flask.flash(message)
        except ERRORS as exc:
            flask.flash(f"Kept as a draft, not scheduled: {exc}", "error")
    return flask.redirect(flask.url_for("console.manage_campaign", campaign_id=created.id), 303)


def _manage(c: Container, campaign_id: str, errors: dict[str, str], status: int = 200) -> Any:
    service = c.campaign_service
    shown = service.show(campaign_id)  # NotFound: the dashboard's 404 page
    campaign = service.get(campaign_id)
    before = campaign.status in (DRAFT, SCHEDULED)
    report = service.preview(campaign_id, 3) if before else None
    estimate = None
    if before:
        estimate = c.audience_estimator.estimate(campaign.segment, campaign.ab, campaign.id)
    samples = report.samples if report else []
    sample = flask.request.args.get("sample") or (samples[0] if samples else "")
    page = render("campaign_manage.html", "campaigns", campaign=campaign, shown=shown,
                  report=report, estimate=estimate and estimate.to_doc(), samples=samples,
                  estimate_text=audience_text(estimate.to_doc()) if estimate else "",
                  sample=sample, errors=errors, zones=ZONES, figures=_summary(c, campaign_id),
                  segment_json=json.dumps(campaign.segment, indent=2),
                  ab_json=json.dumps(campaign.ab, indent=2) if campaign.ab else "")  # fmt: skip
    return page, status


def audience_text(estimate: Mapping[str, Any]) -> str:
    """One sentence: how many, the A/B split, and the cost on GCP."""
    text = f"{estimate['total']:,} subscribers"
    if estimate["variants"]:
        split = ", ".join(f"{n:,} get {v}" for v, n in estimate["variants"].items())
        text += (f": {split} in the test; {estimate['remainder']:,} get the winner, "
                 f"{estimate['holdout']:,} held out")  # fmt: skip
    usd = estimate["usd"]
    shown = f"{usd:.2f}" if usd >= 0.01 else f"{usd:.6f}"  # a small send costs fractions of a cent
    return text + f". Estimated GCP cost: ${shown}."


def _dispatched(campaign: Campaign) -> int:
    return sum(p.recipients for p in campaign.progress.values())


def _figures(c: Container) -> dict[str, Any]:
    try:
        return {s.campaign_id: s for s in c.dashboards.campaigns()}
    except (TransientError, MailpipeError):
        return {}  # the list still works when the warehouse does not answer


def _summary(c: Container, campaign_id: str) -> Any:
    try:
        return c.dashboards.campaign(campaign_id)
    except (NotFound, TransientError):
        return None
