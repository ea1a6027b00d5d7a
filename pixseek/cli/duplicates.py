"""`pixseek duplicates`: exact, near and similar duplicate groups of a collection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pixseek.cli.context import settings_from, where_option


@click.command("duplicates")
@click.option("--collection", "-c", required=True, help="Collection to look through.")
@click.option(
    "--tier",
    type=click.Choice(["exact", "near", "similar"]),
    default="near",
    show_default=True,
    help="exact: same bytes; near: same picture re-encoded/resized/cropped (perceptual hash, "
    "confirmed by CLIP); similar: same scene (CLIP cosine).",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="near: most hash bits that may differ (default 10 of 64); similar: least CLIP cosine "
    "(default 0.92).",
)
@click.option(
    "--confirm",
    type=float,
    default=None,
    help="near: least CLIP cosine each pair must also have (default 0.80).",
)
@click.option("--no-confirm", is_flag=True, help="near: hash distance alone.")
@click.option(
    "--time-window",
    type=float,
    default=None,
    metavar="SECONDS",
    help="similar: only pictures taken within this many seconds of each other (EXIF).",
)
@where_option("Only points matching (the --where language of search).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Write a review page.")
@click.option(
    "--update-hashes",
    is_flag=True,
    help="First compute perceptual hashes for points that have none (older collections).",
)
@click.pass_context
def duplicates_command(
    ctx: click.Context,
    collection: str,
    tier: str,
    threshold: float | None,
    confirm: float | None,
    no_confirm: bool,
    time_window: float | None,
    wheres: tuple[str, ...],
    as_json: bool,
    html_out: str | None,
    update_hashes: bool,
) -> None:
    """Find duplicate groups in a collection, each with a suggested keeper and the reason."""
    from pixseek.search import duplicates as dup
    from pixseek.search import duplicates_render as render
    from pixseek.search.filters import compile_filters
    from pixseek.store import open_store

    settings = settings_from(ctx)
    store = open_store(settings)
    if update_hashes:
        update_hashes_and_report(store, collection, settings.max_image_pixels, as_json)
    options = dup.DuplicateOptions(tier=tier, filter=compile_filters(wheres))
    options.with_threshold(threshold)
    if no_confirm:
        options.confirm = None
    elif confirm is not None:
        options.confirm = confirm
    options.time_window = time_window
    report = dup.find_duplicates(store, collection, options)
    if html_out:
        Path(html_out).write_text(render.review_page(report), encoding="utf-8")
    if as_json:
        if report.groups:
            click.echo(render.json_lines(report))
    elif report.groups:
        click.echo(render.text(report))
    click.echo(
        render.summary_line(report) + (f"; review page: {html_out}" if html_out else ""),
        err=as_json,
    )


def update_hashes_and_report(store: Any, collection: str, max_pixels: int, as_json: bool) -> None:
    """The hash pass of `--update-hashes` and `pixseek enrich hashes`, and its one line."""
    import json

    from pixseek.ingest.hashes import update_hashes

    result = update_hashes(store, collection, max_pixels)
    line = (
        f"{collection}: hashes {result.hashed} computed, {result.from_payload} from payload, "
        f"{len(result.failed)} failed" + (", phash vector added" if result.vector_added else "")
    )
    click.echo(json.dumps(result.as_dict()) if as_json else line, err=not as_json)
    for failure in result.failed[:10]:
        click.echo(f"  failed: {failure['source']}: {failure['reason']}", err=True)
