"""Which data directory and public URL a CLI command works with, said and checked up front.

The CLI works on the data directory of `make run` (MAILPIPE_DATA_DIR; by default the
checkout's `var`, wherever the command runs). It says which one on stderr, and refuses one
that does not exist, except for the commands that fill a new one (`run`, `demo`,
`subscribers import`): a typo or another working directory must not create an empty data
directory that then "has no such subscriber". The links the CLI renders itself (`campaign
test`) use the public URL of the runner that last ran on that directory (its runner.json),
unless MAILPIPE_PUBLIC_URL says otherwise.
"""

from __future__ import annotations

from dataclasses import replace

import click

from shared import bootstrap
from shared import settings as settings_module
from shared.bootstrap import Container
from shared.runner.runner_file import RunnerInfo
from shared.settings import Settings

# Commands that create the data directory they are given (top-level name, subcommand name).
CREATES_DATA_DIR = frozenset({("run", ""), ("demo", ""), ("subscribers", "import")})
# Commands that read no data directory (they check files or DNS names the user gives).
NEEDS_NO_DATA_DIR = frozenset({("triggers", "validate"), ("doctor", "")})


def with_runner_url(settings: Settings) -> Settings:
    """`settings` with the public URL of the runner that runs (or last ran) on its data
    directory, when the environment names none."""
    if "MAILPIPE_PUBLIC_URL" in settings.extra or not settings.is_local:
        return settings
    info = RunnerInfo.read(settings.data_dir)
    if info is None or not info.public_url:
        return settings
    return replace(settings, public_url=info.public_url)


def prepare(command: str, subcommand: str) -> None:
    """Install this command's container (unless one is installed: tests, the runner), say which
    data directory it uses, and refuse a missing one unless the command creates it."""
    if command == "run" or {(command, subcommand), (command, "")} & NEEDS_NO_DATA_DIR:
        return  # `run` builds its own container and prints the data directory in its banner
    own = bootstrap.installed() is None  # else a test or the runner gave the container
    if own:
        bootstrap.install(Container(with_runner_url(settings_module.load())))
    settings = bootstrap.container().settings
    if not settings.is_local:
        return
    data_dir = settings.data_dir.resolve()
    creates = (command, subcommand) in CREATES_DATA_DIR or (command, "") in CREATES_DATA_DIR
    if not data_dir.is_dir() and not creates:
        raise click.ClickException(
            f"the data directory {data_dir} does not exist. Start `make run` (or "
            "`mailpipe demo`, `mailpipe subscribers import`) to create it, or set "
            "MAILPIPE_DATA_DIR to the directory `make run` uses."
        )
    if own:
        click.echo(f"Using data directory {data_dir}", err=True)
