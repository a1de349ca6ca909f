"""`mailpipe gdpr export EMAIL` / `mailpipe gdpr erase EMAIL`: a person's data, out or gone."""

from __future__ import annotations

import json

import click

from shared.bootstrap import container


def register(cli: click.Group) -> None:
    cli.add_command(gdpr)


@click.group()
def gdpr() -> None:
    """Data-subject requests: export everything held about a person, or erase it."""


@gdpr.command()
@click.argument("email")
def export(email: str) -> None:
    """Print everything held about EMAIL as JSON (subscriber and consent records, suppression,
    tokens, send outcomes, warehouse rows, stored local mail)."""
    data = container().gdpr.export(email)
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))


@gdpr.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(email: str, yes: bool) -> None:
    """Remove EMAIL's personal data from every store; a hashed suppression entry is kept so the
    address is never mailed again. Prints what was removed as JSON."""
    if not yes:
        click.confirm(f"Erase every record of {email}? This cannot be undone", abort=True)
    report = container().gdpr.erase(email)
    click.echo(json.dumps(report, indent=2, sort_keys=True))
