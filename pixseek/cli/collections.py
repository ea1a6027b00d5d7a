"""`pixseek collections [...]`: list, drop and index collections."""

from __future__ import annotations

import json
import sys

import click

from pixseek.cli.context import settings_from


@click.group("collections", invoke_without_command=True)
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
            record = {"name": info.name, "points": info.points, "vectors": info.vectors}
            click.echo(json.dumps({**record, "storage": info.storage.as_dict()}))
        return
    if not infos:
        click.echo("no collections yet; create one with `pixseek ingest PATH --collection NAME`")
        return
    click.echo(f"{'name':24} {'points':>9}  {'vectors':24} storage")
    for info in infos:
        vectors = ", ".join(f"{k}:{v}" for k, v in info.vectors.items())
        click.echo(f"{info.name:24} {info.points:>9}  {vectors:24} {info.storage.describe()}")


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
    if not yes:
        if not sys.stdin.isatty():
            from pixseek.errors import InputError

            raise InputError(
                f"not dropping {name!r}: stdin is not a terminal, so pixseek cannot ask; "
                f"add --yes to delete collection {name!r} and all its points"
            )
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
