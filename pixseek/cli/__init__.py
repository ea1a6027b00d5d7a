"""The `pixseek` command: the top floor. One module per command group; nothing imports this.

Command modules import only click and light core modules at import time (heavy stages load
inside the command), so `pixseek --help`, `collections`, `config` and `jobs status` start
without torch.
"""

from __future__ import annotations

from typing import Any

import click

from pixseek.cli.collections import collections_command
from pixseek.cli.config import config_command
from pixseek.cli.duplicates import duplicates_command
from pixseek.cli.enrich import enrich_command
from pixseek.cli.evaluate import eval_command, eval_queries_command, eval_research_command
from pixseek.cli.ingest import ingest_command
from pixseek.cli.jobs import jobs_command
from pixseek.cli.models import models_command
from pixseek.cli.search import search_command
from pixseek.cli.serve import serve_command
from pixseek.cli.worker import worker_command
from pixseek.errors import PixseekError


class PixseekGroup(click.Group):
    """Turns a PixseekError into one line on stderr (plus its hint) and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PixseekError as exc:
            click.echo(f"pixseek: error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"pixseek: hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("pixseek: interrupted; what was stored so far is kept", err=True)
            ctx.exit(130)


@click.group(cls=PixseekGroup)
@click.version_option(package_name="pixseek")
def main() -> None:
    """pixseek: image search over OpenCLIP embeddings in Qdrant."""


for command in (
    ingest_command,
    search_command,
    collections_command,
    config_command,
    duplicates_command,
    enrich_command,
    models_command,
    jobs_command,
    worker_command,
    serve_command,
    eval_command,
    eval_queries_command,
    eval_research_command,
):
    main.add_command(command)
