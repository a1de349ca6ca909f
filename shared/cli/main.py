"""`mailpipe`: run the pipeline locally and operate it (campaigns, subscribers, DLQ, reports).

Each command group lives in its own module and registers itself on `cli` below.
"""

from __future__ import annotations

import sys

import click

from shared import settings as settings_module
from shared.domain.errors import MailpipeError


class _Mailpipe(click.Group):
    """Keeps the command line for `cli` to see which (sub)command runs before it runs."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["mailpipe.args"] = list(args)
        return super().parse_args(ctx, args)


@click.group(cls=_Mailpipe, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Mailpipe: the email-marketing pipeline for Google Cloud, runnable on your laptop."""
    words = ctx.meta.get("mailpipe.args", [])
    if ctx.resilient_parsing or any(a in ("-h", "--help") for a in words):
        return
    from shared.cli import workspace

    subcommand = words[1] if len(words) > 1 and not words[1].startswith("-") else ""
    workspace.prepare(ctx.invoked_subcommand or "", subcommand)


@cli.command()
def run() -> None:
    """Start the whole pipeline locally (HTTP functions, bus workers, SMTP sink, inbox)."""
    from shared.bootstrap import Container
    from shared.logs import configure_logging
    from shared.runner.local_runner import LocalRunner

    settings = settings_module.load()
    configure_logging(settings.log_level, human=True)
    runner = LocalRunner(Container(settings))
    try:
        runner.start()
    except OSError as exc:
        raise click.ClickException(
            f"cannot start: {exc} (is another `make run` using the port?)"
        ) from exc
    runner.serve_forever()


def _register_groups() -> None:
    """Command groups contributed by other modules (campaigns, subscribers, dlq, ...)."""
    import importlib
    import pkgutil

    import shared.cli as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("cmd_"):
            importlib.import_module(f"shared.cli.{module.name}").register(cli)


def main() -> None:
    _register_groups()
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MailpipeError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug: say what, exit non-zero, no stack trace for the user
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
