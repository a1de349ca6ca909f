"""`mailpipe status`: is the pipeline healthy? Queue depths, campaigns in flight, send rates
over the last minutes, and the most recent errors (the newest dead letters)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from shared.bootstrap import Container, container
from shared.domain.errors import MailpipeError
from shared.ports import DeadLetter, paged

CAMPAIGNS = "campaigns"
RECENT_S = 7 * 86_400  # sent campaigns younger than this are checked for unfinished delivery
SETTLED = {"draft", "sent", "done", "completed", "cancelled", "canceled", "failed", "archived"}


def register(cli: click.Group) -> None:
    cli.add_command(status)


@click.command()
@click.option("--minutes", default=10, show_default=True, help="Send-rate window.")
@click.option("--errors", "error_count", default=5, show_default=True, help="Recent errors.")
def status(minutes: int, error_count: int) -> None:
    """Queue depths, campaigns in flight, send rates and recent errors."""
    c = container()
    console = Console()
    console.print(_queues(c))
    console.print(_campaigns_in_flight(c))
    console.print(_send_rates(c, minutes))
    console.print(_recent_errors(c, error_count))


def _queues(c: Container) -> Table:
    dead = c.dead_letters.counts()
    table = Table(title="Queues per subscription", title_justify="left")
    for name in ("Subscription", "Ready", "In flight", "Retrying", "Dead letters", "Oldest"):
        table.add_column(name, justify="left" if name == "Subscription" else "right")
    depths: dict[str, Any] = c.bus.depths() if c.settings.is_local else {}
    for name in sorted(dead.keys() | depths.keys()):
        d = depths.get(name)
        cells = ([str(d["ready"]), str(d["leased"]), str(d["backoff"]),
                  f"{d['oldest_age_s']:.0f}s"] if d else ["n/a"] * 4)  # fmt: skip
        table.add_row(name, *cells[:3], str(dead.get(name, 0)), cells[3],
                      style="red" if dead.get(name) else None)  # fmt: skip
    if not c.settings.is_local:
        table.caption = "Backlogs on GCP: Cloud Monitoring, subscription/num_undelivered_messages."
    return table


def _campaigns_in_flight(c: Container) -> Table:
    """Campaigns not settled, and sent ones whose recipients are not all final yet (pending,
    retrying, or in a dead-letter hold), with the counts; sent ones only from the last
    RECENT_S, so the ledgers read stay few."""
    table = Table("Campaign", "Name", "Status", "Delivery",
                  title="Campaigns in flight", title_justify="left")  # fmt: skip
    held = c.held_batches.per_campaign()
    since = time.time() - RECENT_S
    for page in paged(c.documents, CAMPAIGNS):
        for campaign_id, doc in page:
            state = str(doc.get("status") or "unknown")
            if state.lower() in SETTLED and not _recent(doc, since) and not held[campaign_id]:
                continue
            if state.lower() in ("draft", "cancelled"):
                continue
            row = _in_flight(c, campaign_id, state)
            if row:
                table.add_row(campaign_id, str(doc.get("name") or ""), *row)
    if not table.rows:
        table.caption = "None: no campaign is scheduled, sending, delivering or paused."
    return table


def _in_flight(c: Container, campaign_id: str, state: str) -> tuple[str, str] | None:
    """(status as people read it, what is not final) of a campaign still in flight or with
    failed recipients; None for one settled cleanly."""
    try:
        delivery = c.campaign_service.delivery(campaign_id)
    except (MailpipeError, KeyError, TypeError, ValueError) as exc:  # a document we cannot read
        return (state, f"delivery unknown ({exc})") if state.lower() not in SETTLED else None
    shown = delivery.status_of(state)
    if shown.lower() in SETTLED and not delivery.failed:
        return None
    return shown, delivery.summary() or "all sent"


def _recent(doc: dict[str, Any], since: float) -> bool:
    history = doc.get("history") or [{}]
    return float(history[-1].get("at") or 0) >= since


def _send_rates(c: Container, minutes: int) -> Table:
    since = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    rates = {r.minute: r for r in c.dashboards.send_rates(since)}
    table = Table("Minute (UTC)", "Sent", "Failed", "Suppressed",
                  title=f"Sending, last {minutes} minutes", title_justify="left")  # fmt: skip
    total = 0
    for n in range(minutes):
        minute = since + timedelta(minutes=n)
        r = rates.get(minute)
        total += r.sent if r else 0
        table.add_row(minute.strftime("%H:%M"), *(str(getattr(r, k, 0)) for k in
                                                  ("sent", "failed", "suppressed")))  # fmt: skip
    table.caption = f"{total} sent, {total / minutes:.1f} per minute on average."
    return table


def _recent_errors(c: Container, count: int) -> Table:
    letters = c.dead_letters
    newest: list[DeadLetter] = []
    for subscription, waiting in letters.counts().items():
        if waiting:
            newest += letters.list(subscription, limit=1_000)[-count:]
    newest.sort(key=lambda d: d.dead_lettered_at, reverse=True)
    table = Table("Dead-lettered at", "Subscription", "Message id", "Last error",
                  title="Recent errors", title_justify="left")  # fmt: skip
    for d in newest[:count]:
        table.add_row(d.dead_lettered_at, d.subscription, d.message_id, d.last_error[:100])
    if not newest:
        table.caption = "None: no dead letters."
    return table
