"""The `pixseek` command: core commands here, each pipeline stage registers its own."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pixseek.config import Settings, load_settings
from pixseek.errors import UserError


class PixseekGroup(click.Group):
    """Turns UserError into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"pixseek: error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("pixseek: interrupted; what was stored so far is kept", err=True)
            ctx.exit(130)


def settings_from(ctx: click.Context) -> Settings:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
    return root.obj


@click.group(cls=PixseekGroup)
@click.version_option(package_name="pixseek")
def main() -> None:
    """pixseek: image search over OpenCLIP embeddings in Qdrant."""


@main.command("config")
@click.pass_context
def config_command(ctx: click.Context) -> None:
    """Print the effective settings (environment > config file > defaults)."""
    click.echo(json.dumps(settings_from(ctx).as_dict(), indent=2))


@main.group("collections", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per collection.")
@click.pass_context
def collections_command(ctx: click.Context, as_json: bool) -> None:
    """List collections (name, points, vectors); `collections drop NAME` deletes one."""
    if ctx.invoked_subcommand is not None:
        return
    from pixseek.store import open_store

    infos = open_store(settings_from(ctx)).list_collections()
    if as_json:
        for info in infos:
            click.echo(
                json.dumps({"name": info.name, "points": info.points, "vectors": info.vectors})
            )
        return
    if not infos:
        click.echo("no collections yet; create one with `pixseek ingest PATH --collection NAME`")
        return
    click.echo(f"{'name':24} {'points':>9}  vectors")
    for info in infos:
        vectors = ", ".join(f"{k}:{v}" for k, v in info.vectors.items())
        click.echo(f"{info.name:24} {info.points:>9}  {vectors}")


@collections_command.command("drop")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def drop_command(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete collection NAME and all its points."""
    from pixseek.errors import CollectionNotFound
    from pixseek.store import open_store

    store = open_store(settings_from(ctx))
    if store.get_collection(name) is None:
        raise CollectionNotFound(name)
    if not yes and sys.stdin.isatty():
        click.confirm(f"delete collection {name!r} and all its points?", abort=True)
    store.drop_collection(name)
    click.echo(f"dropped {name}")


@collections_command.command("optimize")
@click.argument("name")
@click.pass_context
def optimize_command(ctx: click.Context, name: str) -> None:
    """Build the vector index (HNSW) of collection NAME now.

    `pixseek ingest` does this by itself once a collection has 20,000+ points; smaller
    collections are searched exactly, which is as fast. A Qdrant server indexes in the
    background: this then only reports where it stands.
    """
    import time

    from pixseek.store import open_store

    started = time.perf_counter()
    status = open_store(settings_from(ctx)).optimize(name)
    click.echo(f"{name}: {status.describe()} ({time.perf_counter() - started:.1f}s)")


@main.group("models")
def models_command() -> None:
    """Model utilities."""


@models_command.command("random")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--arch", default="ViT-B-32", show_default=True, help='open_clip name or "tiny".')
def random_model_command(directory: str, arch: str) -> None:
    """Write an open_clip model with RANDOM weights to DIRECTORY (local-dir layout).

    For smoke tests and benchmarks on machines that cannot download weights: use it with
    PIXSEEK_CLIP_MODEL=local-dir:DIRECTORY. Search results from it are meaningless.
    """
    from pathlib import Path

    from pixseek.models.random_weights import write_random_clip

    try:
        path = write_random_clip(Path(directory), arch)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"local-dir:{path.resolve()}")


def _register_stages() -> None:
    from pixseek.ingest.cli import ingest_command

    main.add_command(ingest_command)

    from pixseek.search.cli import search_command

    main.add_command(search_command)

    from pixseek.evaluation.cli import eval_command, eval_queries_command

    main.add_command(eval_command)
    main.add_command(eval_queries_command)

    from pixseek.worker.cli import jobs_command, worker_command

    main.add_command(jobs_command)
    main.add_command(worker_command)

    from pixseek.api.cli import serve_command

    main.add_command(serve_command)


_register_stages()
