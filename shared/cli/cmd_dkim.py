"""`mailpipe dkim keygen`: a new DKIM key and the DNS TXT record that publishes it."""

from __future__ import annotations

import click

from shared.adapters.esp.dkim_signer import ED25519, RSA, generate_key


def register(cli: click.Group) -> None:
    cli.add_command(dkim)


@click.group()
def dkim() -> None:
    """DKIM keys for signing outgoing mail."""


@dkim.command()
@click.option("--domain", required=True, help="The signing domain (d=), e.g. news.example.com.")
@click.option("--selector", required=True, help="The selector (s=), e.g. mp2026.")
@click.option("--type", "kind", type=click.Choice([RSA, ED25519]), default=RSA,
              show_default=True,
              help="rsa (2048 bits, verified everywhere) or ed25519 (short; publish an RSA "
              "key beside it, since not every receiver verifies Ed25519).")  # fmt: skip
def keygen(domain: str, selector: str, kind: str) -> None:
    """Print a new private key (store it as MAILPIPE_DKIM_PRIVATE_KEY) and its TXT record."""
    if not selector.replace("-", "").replace(".", "").isalnum():
        raise click.BadParameter("letters, digits, - and . only", param_hint="--selector")
    pem, key = generate_key(kind)
    name = f"{selector}._domainkey.{domain.strip('.').lower()}"
    click.echo("# Private key: the secret MAILPIPE_DKIM_PRIVATE_KEY (Secret Manager in GCP:")
    click.echo("# mailpipe-dkim-private-key). Keep it out of version control.")
    click.echo(pem.rstrip())
    click.echo("")
    click.echo(f"# Publish this TXT record, then set MAILPIPE_DKIM_SELECTOR={selector}:")
    click.echo(f"{name}. IN TXT {_quoted_strings(key.txt_record())}")


def _quoted_strings(value: str, size: int = 255) -> str:
    """A TXT value as DNS zone files take it: strings of at most 255 characters each (an RSA
    record is longer; resolvers join the strings back)."""
    return " ".join(f'"{value[i : i + size]}"' for i in range(0, len(value), size))
