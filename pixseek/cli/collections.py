"""`pixseek collections [...]`: list, show (facet counts), drop, index, check, repair, snapshot,
restore and migrate collections."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pixseek.cli.context import settings_from, where_option


@click.group("collections", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per collection.")
@click.pass_context
def collections_command(ctx: click.Context, as_json: bool) -> None:
    """List collections (name, points, vectors); `collections drop NAME` deletes one."""
    if ctx.invoked_subcommand is not None:
        return
    from pixseek.store import open_store

    all_infos = open_store(settings_from(ctx)).list_collections()
    infos = [info for info in all_infos if info.error is None]
    damaged = [info for info in all_infos if info.error is not None]
    for info in damaged:  # listed after the others, on stderr, and the exit code says so
        click.echo(f"pixseek: error: {info.error}", err=True)
    if as_json:
        for info in infos:
            record = {"name": info.name, "points": info.points, "vectors": info.vectors}
            click.echo(json.dumps({**record, "storage": info.storage.as_dict()}))
        for info in damaged:
            click.echo(json.dumps({"name": info.name, "error": info.error}))
        if damaged:
            ctx.exit(2)
        return
    if not infos and damaged:
        ctx.exit(2)
    if not infos:
        click.echo("no collections yet; create one with `pixseek ingest PATH --collection NAME`")
        return
    click.echo(f"{'name':24} {'points':>9}  {'vectors':24} storage")
    for info in infos:
        vectors = ", ".join(f"{k}:{v}" for k, v in info.vectors.items())
        click.echo(f"{info.name:24} {info.points:>9}  {vectors:24} {info.storage.describe()}")
    if damaged:
        ctx.exit(2)


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


def _edge_store(ctx: click.Context, command: str):
    """The embedded store, or a one-line error: a Qdrant server looks after its own storage."""
    from pixseek.errors import InputError
    from pixseek.store import open_store
    from pixseek.store.edge import EdgeStore

    store = open_store(settings_from(ctx))
    address = getattr(store, "address", None)  # a RemoteStore: `pixseek serve` holds the files
    if address is not None and not isinstance(store, EdgeStore):
        from pixseek.errors import Conflict

        raise Conflict(
            f"`collections {command}` works on the store's files, which the pixseek server at "
            f"{address.url} (pid {address.pid}) holds open; stop it first"
        )
    if not isinstance(store, EdgeStore):
        raise InputError(
            f"`collections {command}` works on the embedded store; a Qdrant server keeps and "
            "checks its own storage (use its snapshot API: POST /collections/NAME/snapshots)"
        )
    return store


@collections_command.command("show")
@click.argument("name")
@where_option("Count only the points this filter keeps (the --where language of search).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with the counts.")
@click.pass_context
def show_command(ctx: click.Context, name: str, wheres: tuple[str, ...], as_json: bool) -> None:
    """Collection NAME: points, vectors, storage, and counts per label, format, camera, year."""
    from pixseek.errors import CollectionNotFound
    from pixseek.search.facets import collection_facets
    from pixseek.search.filters import compile_filters
    from pixseek.store import open_store

    store = open_store(settings_from(ctx))
    info = store.get_collection(name)
    if info is None:
        raise CollectionNotFound(name)
    flt = compile_filters(wheres)
    facets = collection_facets(store, name, flt)
    matching = store.count(name, flt) if flt is not None else info.points
    record = {
        "name": info.name,
        "points": info.points,
        "matching": matching,
        "vectors": info.vectors,
        "storage": info.storage.as_dict(),
        **facets.as_dict(),
    }
    if as_json:
        click.echo(json.dumps(record))
        return
    vectors = ", ".join(f"{k}:{v}" for k, v in info.vectors.items())
    click.echo(f"{info.name}: {info.points} points, vectors {vectors}, {info.storage.describe()}")
    if flt is not None:
        click.echo(f"{matching} points match {' and '.join(wheres)}")
    for facet, counts in facets.counts.items():
        shown = ", ".join(f"{value} {count}" for value, count in counts.items()) or "-"
        more = " (most frequent only)" if facet in facets.truncated else ""
        click.echo(f"{facet}: {shown}{more}")


@collections_command.command("check")
@click.argument("name")
@click.pass_context
def check_command(ctx: click.Context, name: str) -> None:
    """Read every point of collection NAME and verify it (exit 2 when damaged)."""
    from pixseek.store.edge_repair import check

    report = check(_edge_store(ctx, "check"), name)
    if report.ok:
        click.echo(f"{name}: ok, {report.points} points read and verified")
        return
    for problem in report.problems:
        click.echo(f"pixseek: error: {problem}", err=True)
    click.echo(f"run `pixseek collections repair {name}` to rebuild what can be read", err=True)
    ctx.exit(2)


@collections_command.command("repair")
@click.argument("name")
@click.pass_context
def repair_command(ctx: click.Context, name: str) -> None:
    """Rebuild collection NAME from the points that can still be read; re-ingesting its roots
    restores the rest (point ids derive from content and location)."""
    from pixseek.store.edge_repair import repair

    report = repair(_edge_store(ctx, "repair"), name)
    for note in report.notes:
        click.echo(f"  {note}", err=True)
    click.echo(report.describe())


@collections_command.command("snapshot")
@click.argument("name")
@click.argument("target", type=click.Path(path_type=Path), default=Path("."))
@click.pass_context
def snapshot_command(ctx: click.Context, name: str, target: Path) -> None:
    """Write a snapshot of collection NAME (a .tar) to TARGET (a file or a folder)."""
    from pixseek.store.edge_repair import snapshot

    written = snapshot(_edge_store(ctx, "snapshot"), name, target)
    click.echo(f"{name}: snapshot written to {written}")


@collections_command.command("restore")
@click.argument("name")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Replace an existing collection without asking.")
@click.pass_context
def restore_command(ctx: click.Context, name: str, source: Path, yes: bool) -> None:
    """Replace (or create) collection NAME with the content of snapshot SOURCE."""
    from pixseek.errors import InputError
    from pixseek.store.edge_repair import restore

    store = _edge_store(ctx, "restore")
    if (store.root / name).exists() and not yes:
        if not sys.stdin.isatty():
            raise InputError(
                f"not replacing {name!r}: stdin is not a terminal, so pixseek cannot ask; "
                f"add --yes to replace collection {name!r} with {source}"
            )
        click.confirm(f"replace collection {name!r} with {source}?", abort=True)
    points = restore(store, name, source)
    click.echo(f"{name}: restored from {source}, {points} points")


@collections_command.command("migrate")
@click.argument("name")
@click.pass_context
def migrate_command(ctx: click.Context, name: str) -> None:
    """Bring collection NAME to the current payload schema (ingest also does it by itself)."""
    from pixseek.ingest.collection import migrate
    from pixseek.store import open_store

    store = open_store(settings_from(ctx))
    click.echo(migrate(store, name))
    store.close()
