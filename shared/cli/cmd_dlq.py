"""`mailpipe dlq`: dead letters per subscription (local bus or Pub/Sub), listed, shown,
replayed or purged. Replay is idempotent: a replayed message leaves the dead-letter hold, so
replaying again requeues nothing, and every consumer is idempotent anyway."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console
from rich.table import Table

from shared import topology
from shared.bootstrap import container
from shared.ports import DeadLetter, DeadLetters
from shared.services.dead_letters import readable_payload

ID_HELP = "Only these message ids (repeat --id); default: all of the subscription's."
WARN_HELP = "Warn about dead letters that expire within this many hours."
RETENTION = timedelta(seconds=topology.DEAD_LETTER_RETENTION_S)


def register(cli: click.Group) -> None:
    cli.add_command(dlq)


def _dead_letters() -> DeadLetters:
    return container().dead_letters


@click.group()
def dlq() -> None:
    """Dead letters: messages a subscription gave up on after its retries."""


@dlq.command("list")
@click.argument("subscription", required=False)
@click.option("--limit", default=50, show_default=True, help="How many to list.")
@click.option("--warn-within", default=24.0, show_default=True, help=WARN_HELP)
def list_(subscription: str | None, limit: int, warn_within: float) -> None:
    """Counts per subscription, or SUBSCRIPTION's oldest dead letters."""
    letters = _dead_letters()
    console = Console()
    within = timedelta(hours=warn_within)
    if subscription is None:
        table = Table("Subscription", "Dead letters", title="Dead letters per subscription")
        counts = letters.counts()
        for name, count in sorted(counts.items()):
            table.add_row(name, str(count), style="bold red" if count else None)
        console.print(table)
        console.print(f"{sum(counts.values())} dead letters in all.")
        for name in sorted(n for n, count in counts.items() if count):
            _warn_expiring(name, letters.list(name, limit=10_000), within)
        return
    found = letters.list(subscription, limit)
    total = letters.counts().get(subscription, len(found))
    table = Table("Message id", "Dead-lettered at", "Expires at", "Attempts", "Last error",
                  title=f"{subscription}: {total} dead letters")  # fmt: skip
    for letter in found:
        table.add_row(letter.message_id, letter.dead_lettered_at, _rfc3339(expires_at(letter)),
                      str(letter.attempts), letter.last_error[:120])  # fmt: skip
    console.print(table)
    if total > len(found):
        console.print(f"Showing the oldest {len(found)} of {total}; use --limit for more.")
    _warn_expiring(subscription, letters.list(subscription, limit=10_000), within)


def expires_at(letter: DeadLetter) -> datetime:
    """When the hold subscription drops the dead letter: retention counts from the moment it
    reached the dead-letter topic."""
    stamp = datetime.fromisoformat(letter.dead_lettered_at.replace("Z", "+00:00"))
    return stamp.astimezone(UTC) + RETENTION


def expiring(letters: Sequence[DeadLetter], within: timedelta, now: datetime) -> list[DeadLetter]:
    return [d for d in letters if expires_at(d) - now <= within]


def _warn_expiring(subscription: str, letters: Sequence[DeadLetter], within: timedelta) -> None:
    soon = expiring(letters, within, datetime.now(UTC))
    if soon:
        hours = f"{within.total_seconds() / 3600:g} h"
        click.echo(
            f"Warning: {subscription}: {len(soon)} messages expire within {hours} (dead letters"
            f" are kept {RETENTION.days} days); replay or purge them before they are lost.",
            err=True,
        )


@dlq.command()
@click.argument("subscription")
@click.option("--id", "message_ids", multiple=True, required=True, help="Message id to show.")
@click.option("--warn-within", default=24.0, show_default=True, help=WARN_HELP)
def show(subscription: str, message_ids: Sequence[str], warn_within: float) -> None:
    """One dead letter in full: attributes, attempts, last error and the decoded payload."""
    letters = {d.message_id: d for d in _dead_letters().list(subscription, limit=10_000)}
    missing = [m for m in message_ids if m not in letters]
    if missing:
        raise click.ClickException(f"no dead letter {', '.join(missing)} on {subscription}")
    for message_id in message_ids:
        _show(letters[message_id])
    _warn_expiring(subscription, [letters[m] for m in message_ids], timedelta(hours=warn_within))


def _show(letter: DeadLetter) -> None:
    click.echo(f"message id:       {letter.message_id}")
    click.echo(f"subscription:     {letter.subscription}")
    click.echo(f"published at:     {letter.published_at}")
    click.echo(f"dead-lettered at: {letter.dead_lettered_at}")
    click.echo(f"expires at:       {_rfc3339(expires_at(letter))}")
    click.echo(f"attempts:         {letter.attempts}")
    click.echo(f"last error:       {letter.last_error}")
    click.echo(f"attributes:       {json.dumps(dict(letter.attributes), sort_keys=True)}")
    click.echo("data:")
    click.echo(_decoded(letter))


def _decoded(letter: DeadLetter) -> str:
    return readable_payload(letter)


@dlq.command()
@click.argument("subscription")
@click.option("--id", "message_ids", multiple=True, help=ID_HELP)
def replay(subscription: str, message_ids: Sequence[str]) -> None:
    """Deliver SUBSCRIPTION's dead letters to its function again (safe to repeat)."""
    moved = _dead_letters().replay(subscription, list(message_ids) or None)
    left = _dead_letters().counts().get(subscription, 0)
    click.echo(f"Replayed {moved} dead letters on {subscription}; {left} left.")


@dlq.command()
@click.argument("subscription")
@click.option("--id", "message_ids", multiple=True, help=ID_HELP)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(subscription: str, message_ids: Sequence[str], yes: bool) -> None:
    """Drop SUBSCRIPTION's dead letters for good."""
    what = f"{len(message_ids)} dead letters" if message_ids else "ALL dead letters"
    if not yes:
        click.confirm(f"Delete {what} of {subscription} for good?", abort=True)
    removed = _dead_letters().purge(subscription, list(message_ids) or None)
    left = _dead_letters().counts().get(subscription, 0)
    click.echo(f"Purged {removed} dead letters on {subscription}; {left} left.")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
