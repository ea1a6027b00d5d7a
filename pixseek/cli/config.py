"""`pixseek config`: the effective settings, credentials masked."""

from __future__ import annotations

import json

import click

from pixseek.cli.context import settings_from


@click.command("config")
@click.pass_context
def config_command(ctx: click.Context) -> None:
    """Print the effective settings (environment > config file > defaults)."""
    click.echo(json.dumps(settings_from(ctx).as_dict(), indent=2))
