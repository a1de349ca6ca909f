"""`mailpipe subscribers`: import a file of any size, follow imports, list and show subscribers.

Import puts the file in the blob store and the import function works through it in chunks
(shared/services/imports.py); the command follows with a progress bar (locally it works through
the chunks itself), then writes the rejected rows with the reason next to the input (or
--rejects). It is safe to run again.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.bootstrap import container
from shared.domain.errors import NotFound
from shared.domain.subscriber import STATUSES
from shared.ports import Filter
from shared.repositories.imports import FINISHED, ImportJob

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
@click.option("--map", "mapping", multiple=True, metavar="HEADER=FIELD",
              help="Map a column to a field (email, first_name, lists, tags, topics, status, "
              "timezone, attributes, attributes.<name>, ignore); repeatable.")  # fmt: skip
@click.option("--no-wait", is_flag=True, help="Queue the import and return its id at once.")
@click.option("--timeout", default=7200.0, show_default=True, help="Seconds to wait at most.")
def import_(
    file: Path,
    confirmed_consent: bool,
    rejects: Path | None,
    mapping: tuple[str, ...],
    no_wait: bool,
    timeout: float,
) -> None:
    """Import FILE (CSV with , ; or tab; Mailchimp and listmonk exports as they are)."""
    service = container().imports
    job = service.upload(file.read_bytes(), file.name)
    service.start(job.id, _mapping(mapping), confirmed_consent)
    if no_wait:
        console.print(f"Import {job.id} queued. Follow it: mailpipe subscribers import-status "
                      f"{job.id} --wait")  # fmt: skip
        return
    finished = _follow_import(job.id, timeout)
    _print_import(finished)
    if finished.status == "refused":
        raise click.ClickException(f"the file was refused: {finished.error}")
    if finished.rejects_blob:
        target = rejects or file.with_name(file.stem + ".rejected.csv")
        target.write_bytes(service.rejects(job.id))
        console.print(f"Rejected rows and the reasons: {target}")


def _mapping(pairs: tuple[str, ...]) -> dict[str, str] | None:
    mapping: dict[str, str] = {}
    for pair in pairs:
        header, sep, target = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not HEADER=FIELD", param_hint="--map")
        mapping[header] = target.strip()
    return mapping or None


BYTES_PER_ROW_GUESS = 50


def _follow_import(import_id: str, timeout: float) -> ImportJob:
    """Progress until the import finishes; locally this process works through it too."""
    c = container()
    worker = None
    if c.settings.is_local:
        from shared.runner.import_worker import start_import_worker

        job = c.imports.status(import_id)
        # Worker processes take a second to start: worth it when there are chunks to share.
        many = job.size > c.settings.import_chunk_rows * BYTES_PER_ROW_GUESS
        processes = c.settings.import_parallel_chunks if many else 1
        worker = start_import_worker(c.bus, settings=c.settings, processes=processes)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("scanning", total=None)
            while True:
                job = c.imports.status(import_id)
                progress.update(task, description=job.status, completed=job.rows_done,
                                total=job.rows_total or None)  # fmt: skip
                if job.status in FINISHED or time.monotonic() > deadline:
                    return job
                time.sleep(0.2)
    finally:
        if worker is not None:
            worker.stop(timeout=60)


def _print_import(job: ImportJob) -> None:
    n = job.counts
    console.print(
        f"{n.get('rows', 0)} rows: {n.get('created', 0)} created, {n.get('updated', 0)} updated, "
        f"{n.get('unchanged', 0)} unchanged, {n.get('rejected', 0)} rejected; "
        f"{n.get('duplicates', 0)} duplicate(s) in the file, {n.get('unsubscribed', 0)} "
        f"unsubscribed, {n.get('suppressed', 0)} suppressed."
    )
    if job.duplicate_lines:
        shown = ", ".join(f"line {a} (as line {b})" for a, b in job.duplicate_lines[:5])
        console.print(f"Addresses seen before: {shown}")
    if n.get("confirmations_requested"):
        console.print(
            f"{n['confirmations_requested']} confirmation mail(s) requested "
            "(double opt-in); `make run` sends them."
        )


@subscribers.command("imports")
@click.option("--limit", default=20, show_default=True)
def imports(limit: int) -> None:
    """Recent imports, newest first."""
    table = Table("Id", "File", "Status", "Rows", "Created", "Rejected", "Duplicates")
    for job in container().imports.recent(limit):
        n = job.counts
        table.add_row(job.id, job.filename, job.status, f"{job.rows_done}/{job.rows_total}",
                      str(n.get("created", 0)), str(n.get("rejected", 0)),
                      str(n.get("duplicates", 0)))  # fmt: skip
    console.print(table)


@subscribers.command("import-status")
@click.argument("import_id")
@click.option("--wait", is_flag=True, help="Follow it with a progress bar until it finishes.")
def import_status(import_id: str, wait: bool) -> None:
    """One import: status, progress, counts, and where its rejects are."""
    job = _follow_import(import_id, 7200.0) if wait else container().imports.status(import_id)
    console.print(f"Import {job.id} ({job.filename}): {job.status}, "
                  f"{job.rows_done} of {job.rows_total or '?'} rows, "
                  f"chunk {job.done_chunks} of {len(job.chunks) or '?'}")  # fmt: skip
    if job.error:
        console.print(f"Refused: {job.error}")
    _print_import(job)
    if job.rejects_blob:
        console.print(f"Rejects: mailpipe subscribers import-rejects {job.id}")


@subscribers.command("import-rejects")
@click.argument("import_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of printing.")  # fmt: skip
def import_rejects(import_id: str, output: Path | None) -> None:
    """The rejected rows of an import (line, email, reason) as CSV."""
    data = container().imports.rejects(import_id)
    if output:
        output.write_bytes(data)
        rows = data.count(b"\n") - 1
        console.print(f"{rows} rejected row(s) written to {output}")
    else:
        click.echo(data.decode("utf-8"), nl=False)


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
