"""`mailpipe subscribers`: import a CSV file, list and show subscribers.

Import validates every row, writes the rejected rows with the reason to a CSV next to the input
(or --rejects), and is safe to run again (see shared/services/subscriber_import.py).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.bootstrap import container
from shared.domain.errors import NotFound
from shared.domain.subscriber import STATUSES
from shared.ports import Filter
from shared.services.subscriber_import import ImportOptions, RejectedRow

console = Console()


def register(cli: click.Group) -> None:
    cli.add_command(subscribers)


@click.group()
def subscribers() -> None:
    """Subscribers: import from CSV, list, show."""


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--confirmed-consent",
    is_flag=True,
    help="You hold proof of opt-in: create them confirmed. Otherwise they are created pending "
    "and sent the double opt-in mail.",
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write rejected rows (default: FILE.rejected.csv).",
)
def import_(file: Path, confirmed_consent: bool, rejects: Path | None) -> None:
    """Import FILE.csv (columns: email, first_name, lists, tags, topics, attributes.<name>)."""
    rejects = rejects or file.with_name(file.stem + ".rejected.csv")
    options = ImportOptions(file.name, _sha256(file), confirmed_consent)
    rows = max(0, sum(1 for _ in _lines(file)) - 1)
    writer = _RejectWriter(rejects)
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("import", total=rows)
            summary = container().subscriber_import.run(
                _lines(file),
                options,
                on_row=lambda n: progress.update(task, completed=n),
                on_reject=writer.write,
            )
    finally:
        writer.close()
    console.print(
        f"{summary.rows} rows: {summary.created} created, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.rejected} rejected."
    )
    if summary.confirmations_requested:
        console.print(
            f"{summary.confirmations_requested} confirmation mail(s) requested "
            "(double opt-in); `make run` sends them."
        )
    if summary.rejected:
        console.print(f"Rejected rows and the reasons: {rejects}")


def _lines(file: Path) -> Iterator[str]:
    with file.open(encoding="utf-8-sig", newline="") as handle:
        try:
            yield from handle
        except UnicodeDecodeError as exc:
            raise click.ClickException(f"{file} is not UTF-8 text ({exc.reason})") from exc


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _RejectWriter:
    """The rejects CSV, created on the first rejected row (no empty file otherwise)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None
        self._writer: Any = None

    def write(self, rejected: RejectedRow) -> None:
        if self._writer is None:
            self._handle = self.path.open("w", newline="", encoding="utf-8")
            fields = ["line", *rejected.row, "reason"]
            self._writer = csv.DictWriter(self._handle, fields, extrasaction="ignore")
            self._writer.writeheader()
        self._writer.writerow({"line": rejected.line, **rejected.row, "reason": rejected.reason})

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


@subscribers.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@click.option("--limit", default=50, show_default=True)
@click.option("--after", help="Start after this subscriber id (paging).")
def list_(status: str | None, limit: int, after: str | None) -> None:
    """Subscribers in id order."""
    filters = [Filter("status", "==", status)] if status else []
    rows = container().documents.query("subscribers", filters, limit=limit, start_after=after)
    table = Table("Id", "Email", "Status", "Name", "Lists", "Created")
    for subscriber_id, doc in rows:
        table.add_row(
            subscriber_id,
            doc.get("email", ""),
            doc.get("status", ""),
            doc.get("first_name", ""),
            ", ".join(doc.get("lists", [])),
            _when(doc.get("created_at")),
        )
    console.print(table)
    if len(rows) == limit:
        console.print(f"More after: --after {rows[-1][0]}")


@subscribers.command()
@click.argument("email_or_id")
def show(email_or_id: str) -> None:
    """One subscriber (by address or id), with consent records."""
    repo = container().subscribers
    subscriber_id = repo.id_for(email_or_id) if "@" in email_or_id else email_or_id
    try:
        found = repo.get(subscriber_id)
    except NotFound as exc:
        raise click.ClickException(f"no subscriber {email_or_id}") from exc
    click.echo(json.dumps(found.to_doc(), indent=2, default=str, ensure_ascii=False))


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")
