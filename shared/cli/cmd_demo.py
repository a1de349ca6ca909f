"""`mailpipe demo`: fill an empty local data directory with demo data for the dashboards."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from shared.bootstrap import Container, container, require_local

if TYPE_CHECKING:
    from shared.analytics.demo import DemoData


def register(cli: click.Group) -> None:
    cli.add_command(demo)


@click.command()
@click.option("--force", is_flag=True, help="Add the demo data even if the data dir has data.")
@click.option("--seed", default=2024, show_default=True, help="Random seed of the demo data.")
def demo(force: bool, seed: int) -> None:
    """Fill an EMPTY data directory with eight weeks of demo subscribers, campaigns and events,
    so that every dashboard chart has something to show."""
    c = container()
    require_local(c)
    data_dir = c.settings.data_dir
    found = _existing_files(data_dir)
    if found and not force:
        raise click.ClickException(
            f"{data_dir} already holds data ({', '.join(found[:3])}"
            f"{', ...' if len(found) > 3 else ''}). Point MAILPIPE_DATA_DIR at an empty "
            "directory, or pass --force to add the demo data to it."
        )
    started = time.monotonic()
    data = write_demo(c, time.time(), seed)
    click.echo(
        f"Demo data written to {data_dir} in {time.monotonic() - started:.1f}s: "
        f"{len(data.subscribers)} subscribers, {len(data.campaigns)} campaigns, "
        f"{len(data.events)} events.\n"
        "See it: `make run`, then open /dashboard, or `mailpipe report demo-summer-sale-ab`."
    )


def write_demo(c: Container, now: float, seed: int = 2024) -> DemoData:
    """Write the demo data set ending at `now` into `c`'s stores; returns what was written."""
    from shared.analytics import demo as demo_data
    from shared.analytics.dashboards import CAMPAIGNS

    data = demo_data.build(now, c.subscribers.id_for, seed=seed)
    for subscriber in data.subscribers:
        c.subscribers.save(subscriber)
    for campaign in data.campaigns:
        c.documents.put(CAMPAIGNS, campaign["id"], campaign)
    c.warehouse.append(data.events)
    return data


def _existing_files(data_dir: Path) -> list[str]:
    """Files already in the data directory, relative to it (empty when it does not exist)."""
    if not data_dir.exists():
        return []
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file())
