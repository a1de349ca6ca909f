"""`mailpipe triggers`: check the trigger definitions before they go live, and see how runs
are doing.

    mailpipe triggers validate [FILE]   FILE (default: the definitions in the template store)
                                        against the store's email templates; exit 1 on problems
    mailpipe triggers runs              runs per trigger and state
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from shared.bootstrap import container
from shared.domain.errors import NotFound
from shared.domain.triggers import Trigger, TriggerSet
from shared.repositories.trigger_runs import STATES


def register(cli: click.Group) -> None:
    cli.add_command(triggers)


@click.group()
def triggers() -> None:
    """Behavioural triggers: email from what subscribers do."""


@triggers.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def validate(file: Path | None) -> None:
    """Check FILE (default: the deployed definitions) and list the triggers it declares."""
    c = container()
    source = str(file) if file else c.settings.triggers_blob
    try:
        text = file.read_text(encoding="utf-8") if file else c.blobs.read(source).decode()
    except (OSError, UnicodeDecodeError, NotFound) as exc:
        raise click.ClickException(f"cannot read {source}: {exc}") from exc
    declared = c.trigger_catalog.validate(text, source)  # InvalidTriggers: listed, exit 1
    Console().print(_table(declared, source))
    click.echo(f"{source}: {len(declared.triggers)} trigger(s), no problems.")


@triggers.command()
def runs() -> None:
    """How many runs each trigger has in each state."""
    counts = container().trigger_runs.counts()
    table = Table("Trigger", *STATES, title="Trigger runs", title_justify="left")
    for trigger_id in sorted({t for t, _ in counts}):
        table.add_row(trigger_id, *(str(counts.get((trigger_id, s), 0)) for s in STATES))
    Console().print(table)
    if not counts:
        click.echo("No trigger runs yet.")


def _table(declared: TriggerSet, source: str) -> Table:
    cap = declared.global_cap
    caption = f"Across triggers: at most {cap.max} per {_span(cap.per_s)}." if cap else None
    columns = ("Id", "On", "Wait", "Unless", "Template", "Cap", "Quiet hours", "Goal")
    table = Table(*columns, title=source, title_justify="left", caption=caption)
    for t in declared.triggers:
        unless = ", ".join(t.unless) or "-"
        table.add_row(
            t.id, _on(t), _span(t.wait_s), unless, t.template, _cap(t), _quiet(t), _goal(t)
        )
    return table


def _on(t: Trigger) -> str:
    conditions = [
        f"{c.property} exists" if c.op == "exists" else f"{c.property} {c.op} {c.value!r}"
        for c in t.conditions
    ]
    return t.event + (f" where {' and '.join(conditions)}" if conditions else "")


def _cap(t: Trigger) -> str:
    return f"{t.frequency_cap.max} per {_span(t.frequency_cap.per_s)}" if t.frequency_cap else "-"


def _quiet(t: Trigger) -> str:
    q = t.quiet_hours
    return f"{_clock(q.start)}-{_clock(q.end)}" if q else "-"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _goal(t: Trigger) -> str:
    return f"{t.goal.event} within {_span(t.goal.within_s)}" if t.goal else "-"


def _span(seconds: float) -> str:
    """3d, 1h, 1d12h, 0s: the units of the definitions file."""
    left, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"
