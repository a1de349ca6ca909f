"""`mailpipe doctor DOMAIN`: the sending domain checked the way mailbox providers check it.

A thin shell over DomainDoctor (shared/services/domain_doctor.py). Exit status 0 when nothing
fails (warnings allowed), 1 when a check fails or DNS cannot be asked."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console
from rich.table import Table

from shared.bootstrap import container
from shared.services.domain_doctor import FAIL, PASS, Report

_STYLE = {PASS: "green", "warn": "yellow", FAIL: "bold red"}


def register(cli: click.Group) -> None:
    cli.add_command(doctor)


@click.command()
@click.argument("domain")
@click.option("--ip", default=None, help="A sending IP: its PTR must resolve back to it.")
@click.option(
    "--dns-server",
    default="",
    metavar="HOST[:PORT]",
    help="Ask this DNS server (default: the system's resolvers).",
)
@click.option("--json", "as_json", is_flag=True, help="The checks as JSON.")
def doctor(domain: str, ip: str | None, dns_server: str, as_json: bool) -> None:
    """Check DOMAIN's SPF, DKIM, DMARC, MX, PTR, MTA-STS, TLS-RPT, rates and unsubscribe."""
    report = container().domain_doctor(dns_server).examine(domain, ip)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "domain": report.domain,
                    "ok": report.ok,
                    "checks": [asdict(c) for c in report.checks],
                },
                indent=2,
            )
        )
    else:
        _print(report)
    if not report.ok:
        raise SystemExit(1)


def _print(report: Report) -> None:
    table = Table(title=f"Sending domain {report.domain}", title_justify="left")
    for column in ("", "Check", "Seen", "Fix"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        mark = f"[{_STYLE[check.status]}]{check.status.upper()}[/]"
        table.add_row(mark, check.name, check.detail, check.fix)
    console = Console()
    console.print(table)
    failed = sum(c.status == FAIL for c in report.checks)
    console.print("All checks pass or warn." if not failed else f"{failed} check(s) fail.")
