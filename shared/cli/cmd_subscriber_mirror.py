"""`mailpipe subscribers mirror-rebuild`: write the warehouse's subscriber mirror from the
document store (shared/services/mirror_rebuild.py), with progress."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from shared.bootstrap import container
from shared.cli.cmd_subscribers import subscribers
from shared.services.mirror_rebuild import MirrorRebuild

console = Console(stderr=True)


def register(cli: click.Group) -> None:
    subscribers.add_command(mirror_rebuild)


@click.command("mirror-rebuild")
def mirror_rebuild() -> None:
    """Rebuild the warehouse's subscriber mirror (subscribers_raw) from every subscriber
    document: once for a deployment that ran before the mirror existed. Safe to repeat."""
    c = container()
    rebuild = MirrorRebuild(c.subscribers, c.warehouse)
    columns = (TextColumn("{task.completed:,} subscribers mirrored"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("mirror", total=None)
        done = rebuild.run(lambda n: progress.update(task, completed=n))
    click.echo(f"{done:,} subscribers mirrored into subscribers_raw")
