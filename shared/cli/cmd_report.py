"""`mailpipe report CAMPAIGN`: a campaign's figures in the terminal, or as an HTML report."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from shared.bootstrap import container
from shared.dashboard import formatting as fmt


def register(cli: click.Group) -> None:
    cli.add_command(report)


@click.command()
@click.argument("campaign_id")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML report with the charts to this file.")  # fmt: skip
def report(campaign_id: str, html_path: Path | None) -> None:
    """Print CAMPAIGN's results (sent, delivered, bounces, complaints, opens, clicks, rates,
    the A/B test and the links), the same figures as the dashboard."""
    from shared.dashboard import pages

    context = pages.campaign_context(container().dashboards, campaign_id)
    if html_path is not None:
        _write_atomically(html_path, pages.render("report.html", **context))
        click.echo(f"Report written to {html_path}")
        return
    _print(Console(), context)


def _write_atomically(path: Path, text: str) -> None:
    """The whole report or nothing: a half-written file never replaces a good one."""
    if not path.parent.is_dir():
        raise click.ClickException(f"no such directory: {path.parent}")
    fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def _print(console: Console, context: dict[str, Any]) -> None:
    campaign = context["campaign"]
    console.print(f"[bold]{campaign.name}[/bold]  ({campaign.campaign_id}, {campaign.status}, "
                  f"first sent {fmt.when(campaign.first_sent_at)})")  # fmt: skip
    if context["draft"]:
        console.print("Not sent yet: no figures. Settings:")
        for label, value in context["draft"]["settings"]:
            console.print(f"  {label}: {value}", markup=False)
        return
    figures = Table(title="Results", title_justify="left")
    figures.add_column("Figure")
    figures.add_column("Value", justify="right")
    figures.add_column("Meaning", style="dim")
    for figure, value in context["figures"]:
        figures.add_row(figure.label, value, figure.explanation)
    console.print(figures)
    _print_days(console, context["days"])
    _print_ab(console, context["ab"])
    _print_links(console, context["links"])


def _print_days(console: Console, days: list[Any]) -> None:
    table = Table(title="Per day (UTC)", title_justify="left")
    for name in ("Day", "Sent", "Delivered", "Bounced", "Opened", "Clicked", "Complaints"):
        table.add_column(name, justify="left" if name == "Day" else "right")
    for d in days:
        counts = (d.sent, d.delivered, d.bounces, d.unique_opens, d.unique_clicks, d.complaints)
        table.add_row(fmt.when(d.day), *(fmt.number(v) for v in counts))
    console.print(table)


def _interval(rate: float | None, ci: Any) -> str:
    shown = fmt.percent(rate)
    return f"{shown} ({fmt.percent(ci.low)} to {fmt.percent(ci.high)})" if ci else shown


def _print_ab(console: Console, ab: Any) -> None:
    if len(ab.variants) < 2:
        console.print("A/B test: none (every recipient got the same message).")
        return
    table = Table(title="A/B test (95% confidence intervals)", title_justify="left")
    for name in ("Variant", "Sent", "Delivered", "Opened", "Open rate", "Clicked", "Click rate"):
        table.add_column(name, justify="left" if name == "Variant" else "right")
    for v in ab.variants:
        table.add_row(
            v.variant,
            fmt.number(v.sent),
            fmt.number(v.delivered),
            fmt.number(v.unique_opens),
            _interval(v.open_rate, v.open_rate_ci),
            fmt.number(v.unique_clicks),
            _interval(v.click_rate, v.click_rate_ci),
        )
    console.print(table)
    verdict = ab.verdict
    headline = f"Winner: variant {verdict.winner}." if verdict.winner else "No winner yet."
    console.print(f"[bold]{headline}[/bold] {verdict.explanation}")


def _print_links(console: Console, links: list[Any]) -> None:
    table = Table(title="Links", title_justify="left")
    for name in ("Link", "Clicks", "People", "By scanners"):
        table.add_column(name, justify="left" if name == "Link" else "right")
    for link in links:
        table.add_row(link.link_url, fmt.number(link.clicks), fmt.number(link.unique_clicks),
                      fmt.number(link.machine_clicks))  # fmt: skip
    console.print(table)
