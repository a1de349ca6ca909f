"""`mailpipe campaign`: create, preview, test, send and watch campaigns.

The commands work on the same data directory as `make run` (MAILPIPE_DATA_DIR) or, with
MAILPIPE_BACKEND=gcp, on Firestore and Pub/Sub. Sending only queues the work: the running
pipeline (`make run` locally, the Cloud Functions in GCP) dispatches, renders and sends it;
`send --wait` follows the progress, and locally runs the pipeline itself if nothing else does.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from shared import topology
from shared.bootstrap import Container, container
from shared.domain.campaign import CANCELLED, PAUSED, SENT, TESTING, Campaign
from shared.services.campaign_preview import PreviewReport

DISPATCH_SUBSCRIPTION = f"dispatch-on-{topology.CAMPAIGN_DISPATCH}"
WORK_SUBSCRIPTIONS = (
    DISPATCH_SUBSCRIPTION,
    f"render-on-{topology.RENDER_REQUESTS}",
    f"send-on-{topology.SEND_REQUESTS}",
)
SETTLED = ("sent", "permanent", "suppressed", "skipped", "failed")
console = Console()


def register(cli: click.Group) -> None:
    cli.add_command(campaign)


def _service() -> Any:
    return container().campaign_service


@click.group()
def campaign() -> None:
    """Campaigns: create, preview, test, schedule or send, pause, resume, cancel, A/B winner."""


# -- create and read ---------------------------------------------------------------------------


def _json_option(value: str | None, name: str) -> Any:
    """JSON given inline or as @path/to/file.json."""
    if value is None:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=name) from exc


def variable_options(command: Any) -> Any:
    """--var, --var-json and --vars: template variables (README: "Template variables")."""
    options = (
        click.option("--var", "variables", multiple=True,
                     help="Template variable KEY=VALUE, the value as text (repeat)."),
        click.option("--var-json", "json_variables", multiple=True,
                     help="Template variable KEY=JSON, e.g. items='[{\"name\": \"Mug\"}]'."),
        click.option("--vars", "variables_file",
                     help="Template variables as one JSON object, inline or @file.json."),
    )  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _template_variables(options: dict[str, Any]) -> dict[str, Any]:
    """--vars first, then each --var-json and --var (a later one wins for the same name)."""
    found = _json_option(options.pop("variables_file"), "--vars") or {}
    if not isinstance(found, dict):
        raise click.BadParameter("must be a JSON object of name: value", param_hint="--vars")
    for pair in options.pop("json_variables"):
        key, value = _pair(pair, "--var-json")
        found[key] = _json_option(value, f"--var-json {key}")
    for pair in options.pop("variables"):
        key, value = _pair(pair, "--var")
        found[key] = value
    return found


def _pair(pair: str, option: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
    return key, value


@campaign.command()
@click.option("--name", help="What the campaign is called (required unless in --spec).")
@click.option("--template", help="Email template name, e.g. newsletter (templates/email/).")
@click.option("--subject", help="A literal subject line (default: the template's <title>).")
@click.option("--sender", help='From address, e.g. "News <news@example.com>".')
@click.option("--segment", help="Segment JSON, inline or @file.json (default: everyone).")
@click.option("--ab", help="A/B test JSON, inline or @file.json.")
@variable_options
@click.option("--id", "campaign_id", help="Choose the id (default: from the name).")
@click.option("--spec", help="The whole campaign as JSON (@file.json); options override it.")
def create(**options: Any) -> None:
    """Create a draft campaign."""
    spec = _json_option(options.pop("spec"), "--spec") or {}
    if not isinstance(spec, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--spec")
    for key in ("name", "template", "subject", "sender", "campaign_id"):
        if options[key] is not None:
            spec["id" if key == "campaign_id" else key] = options[key]
    for key in ("segment", "ab"):
        if options[key] is not None:
            spec[key] = _json_option(options[key], f"--{key}")
    variables = _template_variables(options)
    if variables:
        spec["context"] = {**spec.get("context", {}), **variables}
    created = _service().create(spec)
    console.print(f"Created campaign [bold]{created.id}[/] (draft).")
    console.print(
        f"Next: mailpipe campaign preview {created.id}  |  "
        f"mailpipe campaign test {created.id} --to you@example.com  |  "
        f"mailpipe campaign send {created.id}"
    )


@campaign.command("list")
@click.option("--status", multiple=True, help="Only campaigns in this status (repeat).")
@click.option("--limit", default=100, show_default=True)
def list_(status: tuple[str, ...], limit: int) -> None:
    """Campaigns, oldest id first."""
    found = _service().list_campaigns(status, limit=limit)
    table = Table("Id", "Status", "Name", "Phase", "Dispatched", "Created")
    for c in found:
        dispatched = sum(p.recipients for p in c.progress.values())
        table.add_row(c.id, c.status, c.name, c.phase or "", str(dispatched), _when(c.created_at))
    console.print(table)
    if not found:
        console.print("No campaigns yet: mailpipe campaign create --name ... --template newsletter")


@campaign.command()
@click.argument("campaign_id")
@click.option("--json", "as_json", is_flag=True, help="The full document as JSON.")
def show(campaign_id: str, as_json: bool) -> None:
    """A campaign: status, audience progress, delivery and A/B results."""
    shown = _service().show(campaign_id)
    if as_json:
        click.echo(json.dumps(shown, indent=2, default=str))
        return
    _print_summary(shown)
    _print_engagement(campaign_id)


def _print_summary(shown: dict[str, Any]) -> None:
    console.print(f"[bold]{shown['name']}[/] ({shown['id']}): [bold]{shown['status']}[/]")
    console.print(
        f"  template {shown['template']}, created {_when(shown['created_at'])}"
        + (f", scheduled for {_when(shown['scheduled_at'])}" if shown.get("scheduled_at") else "")
    )
    for phase, p in shown["progress"].items():
        state = "done" if p["done"] else f"page {p['page']}"
        console.print(
            f"  phase {phase}: {p['recipients']} recipients in {p['batches']} "
            f"batch(es), {p['held_out']} held out, {p['excluded']} not eligible ({state})"
        )
    delivery = shown["delivery"]
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(delivery["outcomes"].items())) or "none"
    console.print(
        f"  delivery: {delivery['done']}/{delivery['batches']} batches done, "
        f"{delivery['parked']} parked; outcomes: {outcomes} (send ledger)"
    )
    if delivery.get("summary"):
        console.print(f"  of {delivery['dispatched']:,} dispatched: {delivery['summary']}",
                      markup=False, style=None if delivery["complete"] else "yellow")  # fmt: skip
    for subscriber_id, reason in delivery.get("reasons", {}).items():
        console.print(f"  failed {subscriber_id}: {reason}", markup=False)
    _print_allowance(shown.get("allowance"))
    if shown.get("mirror_missing"):
        console.print(
            f"  waiting for the subscriber mirror: {shown['mirror_missing']:,} confirmed "
            "subscribers are still on their way to the warehouse; the audience is taken once "
            "they are there"
        )
    for result in shown.get("variant_results", []):
        console.print(
            f"  variant {result['name']}: {result['converted']}/{result['exposed']} "
            f"converted ({result['rate']:.2%})"
        )
    if shown.get("decision"):
        console.print(f"  winner {shown['winner']}: {shown['decision'].get('reason', '')}")
    elif shown["status"] == TESTING and shown.get("test_ends_at"):
        console.print(f"  the winner is decided at {_when(shown['test_ends_at'])}")
    elif shown["status"] == TESTING:
        console.print("  the A/B window starts once the test cohort has been delivered")


def _print_engagement(campaign_id: str) -> None:
    """The warehouse's figures, as the dashboard shows them (they may lag the ledger a little,
    and include events imported without a ledger, such as `mailpipe demo`'s)."""
    found = container().dashboards.campaign(campaign_id)
    console.print(
        f"  events: {found.sent:,} sent, {found.delivered:,} delivered, "
        f"{found.bounces:,} bounced; open rate {_rate(found.open_rate)}, "
        f"click rate {_rate(found.click_rate)} (warehouse, as on the dashboard)"
    )


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _print_allowance(allowance: dict[str, Any] | None) -> None:
    """The sending domain's daily cap: how much is left today, and when a held campaign goes on."""
    if not allowance:
        return
    console.print(
        f"  daily cap of {allowance['domain']}: {allowance['used']} of {allowance['limit']} "
        f"recipients dispatched today ({allowance['day']}), {allowance['left_today']} left"
    )
    if allowance.get("held_until"):
        console.print(
            f"  today's allowance is used up: the rest goes at {_when(allowance['held_until'])}"
        )


# -- preview and test --------------------------------------------------------------------------


@campaign.command()
@click.argument("campaign_id")
@click.option("--samples", default=3, show_default=True, help="Subscribers from the audience.")
@click.option("--text", "show_text", is_flag=True, help="Also print the start of the text part.")
@variable_options
def preview(campaign_id: str, samples: int, show_text: bool, **variables: Any) -> None:
    """Render every variant for sample subscribers and synthetic edge cases; --var and the
    like override the campaign's variables for this preview only."""
    report = _service().preview(campaign_id, samples, _template_variables(variables))
    _print_report(report, show_text)
    if not report.ok:
        raise click.ClickException(report.summary())


def _print_report(report: PreviewReport, show_text: bool = False) -> None:
    console.print(f"Samples: {', '.join(report.samples)}")
    for v in report.variants:
        label = f"variant {v.variant}" if v.variant else "template"
        status = "[green]ok[/]" if not v.problems else f"[red]{len(v.problems)} problem(s)[/]"
        console.print(
            f"{label} {v.template}: {status}, {v.rendered} rendered, "
            f"HTML up to {v.html_bytes:,} bytes"
        )
        for subject in v.subjects:
            console.print(f"  subject: {subject}", markup=False)
        for name, origin in v.variables.items():
            console.print(f"  variable {name}: {origin}", markup=False)
        for problem in v.problems:
            console.print(f"  [red]error[/] {escape(problem.describe())}")
        for warning in v.warnings:
            console.print(f"  [yellow]warning[/] {escape(warning.describe())}")
        if show_text and v.text_excerpt:
            console.print(v.text_excerpt, markup=False)


@campaign.command("test")
@click.argument("campaign_id")
@click.option("--to", "to", required=True, help="The address to send the test message to.")
@click.option("--variant", help="Only this variant (default: one message per variant).")
@variable_options
def test_(campaign_id: str, to: str, variant: str | None, **variables: Any) -> None:
    """Send one [TEST] message per variant to an address (not to the audience); --var and the
    like override the campaign's variables for these messages only."""
    sent = _service().test_send(campaign_id, to, variant, _template_variables(variables))
    for email in sent:
        console.print(f"Queued [TEST] message to {email.recipient}: {email.subject}", markup=False)
    _remind_if_idle()


# -- lifecycle ---------------------------------------------------------------------------------


@campaign.command()
@click.argument("campaign_id")
@click.option("--at", required=True, help="When: ISO 8601, e.g. 2026-05-01T09:00:00+02:00.")
def schedule(campaign_id: str, at: str) -> None:
    """Preview, then schedule for a time (the sweep starts it; no zone means UTC)."""
    scheduled = _service().schedule(campaign_id, at)
    console.print(
        f"Scheduled {scheduled.id} for {_when(scheduled.scheduled_at)} "
        "(preview ok). The sweep starts it within a few minutes of that time."
    )


@campaign.command()
@click.argument("campaign_id")
@click.option("--wait", is_flag=True, help="Follow progress (locally, process it if needed).")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to --wait at most.")
def send(campaign_id: str, wait: bool, timeout: float) -> None:
    """Preview, then start sending now."""
    started = _service().send_now(campaign_id)
    console.print(f"Campaign {started.id} is sending (phase {started.phase}; preview ok).")
    if wait:
        _wait(started.id, timeout)
    else:
        _remind_if_idle()


@campaign.command()
@click.argument("campaign_id")
def pause(campaign_id: str) -> None:
    """Hold the campaign: dispatch stops, queued batches are parked until resumed."""
    paused = _service().pause(campaign_id)
    console.print(
        f"Paused {paused.id} (was {paused.paused_from}). Batches already at the "
        "provider still go out; the rest waits for `campaign resume`."
    )


@campaign.command()
@click.argument("campaign_id")
def resume(campaign_id: str) -> None:
    """Continue a paused campaign from where it stopped."""
    resumed, republished = _service().resume(campaign_id)
    console.print(
        f"Resumed {resumed.id} ({resumed.status}); {republished} parked batch(es) requeued."
    )
    _remind_if_idle()


@campaign.command()
@click.argument("campaign_id")
def cancel(campaign_id: str) -> None:
    """Stop for good: nothing not yet sent will be."""
    cancelled = _service().cancel(campaign_id)
    console.print(f"Cancelled {cancelled.id}; undelivered batches will be skipped.")


@campaign.command()
@click.argument("campaign_id")
def duplicate(campaign_id: str) -> None:
    """Copy a campaign (content, audience, A/B test) into a new draft."""
    copy = _service().duplicate(campaign_id)
    console.print(f"Created campaign [bold]{copy.id}[/] (draft), a copy of {campaign_id}.")


@campaign.command()
@click.argument("campaign_id")
def delete(campaign_id: str) -> None:
    """Delete a draft (other campaigns are cancelled, not deleted)."""
    _service().delete_draft(campaign_id)
    console.print(f"Deleted draft {campaign_id}.")


@campaign.command("resend-failed")
@click.argument("campaign_id")
def resend_failed(campaign_id: str) -> None:
    """Queue again the recipients whose sending failed (never anyone already sent)."""
    result = _service().resend_failed(campaign_id)
    if not result["recipients"] and not result["batches"]:
        console.print("No failed recipients to resend.")
        return
    console.print(
        f"Resend {result['resend']}: {result['recipients']} recipient(s) in "
        f"{result['batches']} batch(es) queued."
    )
    _remind_if_idle()


@campaign.command("pick-winner")
@click.argument("campaign_id")
@click.argument("variant")
def pick_winner(campaign_id: str, variant: str) -> None:
    """Override the A/B rule: VARIANT goes to the rest of the audience."""
    picked = _service().pick_winner(campaign_id, variant)
    when = "now" if picked.phase == "remainder" else "once the test phase is dispatched"
    console.print(f"Winner of {picked.id}: {variant}; the remainder is sent {when}.")


# -- waiting and the local pipeline ------------------------------------------------------------


def _idle(c: Container) -> bool:
    """True when no runner (`make run`, or another `send --wait`) processes this data directory's
    bus. Asked of the runner's lock, not of the queues: a busy runner has a queue too."""
    if not c.settings.is_local:
        return False
    from shared.runner.runner_file import RunnerLock

    return not RunnerLock(c.settings.data_dir).running()


def _remind_if_idle() -> None:
    c = container()
    if _idle(c) and _queued(c):
        console.print("Queued; run `make run` to process (nothing is consuming the bus now).")


def _queued(c: Container) -> bool:
    depths = c.bus.depths()
    return any(depths[s]["ready"] for s in WORK_SUBSCRIPTIONS)


def _wait(campaign_id: str, timeout: float) -> None:
    c = container()
    runner = None
    if _idle(c):
        from shared.runner.local_runner import LocalRunner

        console.print("No `make run` is processing the bus: running the pipeline here.")
        runner = LocalRunner(c)
        try:
            runner.start()
        except OSError as exc:
            raise click.ClickException(f"cannot start the local pipeline: {exc}") from exc
    elif c.settings.is_local:
        console.print("`make run` is processing the bus: following its progress.")
    try:
        finished = _follow(c, campaign_id, timeout)
    finally:
        if runner is not None:
            runner.stop()
    if not finished:  # a script's `send --wait && next` must not go on as if it were sent
        raise click.ClickException(
            f"campaign {campaign_id} is still {c.campaign_service.get(campaign_id).status} after "
            f"--timeout {timeout:g} s; it goes on (`mailpipe campaign show {campaign_id}`)"
        )


def _follow(c: Container, campaign_id: str, timeout: float) -> bool:
    """Show progress until the campaign is done or `timeout` is up; whether it is done."""
    service = c.campaign_service
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout
    finished = False
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("sending", total=None)
        while time.monotonic() < deadline:
            current = service.get(campaign_id)
            delivery = service.delivery(campaign_id)
            settled = sum(n for k, n in delivery.outcomes.items() if k in SETTLED)
            dispatched = sum(p.recipients for p in current.progress.values())
            progress.update(
                task,
                completed=settled,
                total=max(dispatched, settled) or None,
                description=f"{current.status}",
            )
            if _finished(c, current):
                finished = True
                break
            time.sleep(0.5)
    _print_summary(service.show(campaign_id))
    return finished


def _finished(c: Container, current: Campaign) -> bool:
    if current.status not in (SENT, TESTING, PAUSED, CANCELLED):
        return False
    if not c.settings.is_local:
        return True
    depths = c.bus.depths()
    return all(
        depths[s]["ready"] + depths[s]["leased"] + depths[s]["backoff"] == 0
        for s in WORK_SUBSCRIPTIONS
    )


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
