"""`pixseek enrich ocr -c NAME`: OCR and the keyword index for an existing collection."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from pixseek.cli.context import settings_from

if TYPE_CHECKING:
    from pixseek.config import Settings
    from pixseek.ingest.enrich import EnrichSummary
    from pixseek.store import VectorStore


@click.group("enrich")
def enrich_command() -> None:
    """Add derived data to the points of a collection (incremental, resumable)."""


@enrich_command.command("ocr")
@click.option("--collection", "-c", required=True, help="Collection to enrich.")
@click.option("--workers", type=click.IntRange(min=1), help="OCR threads (PIXSEEK_OCR_WORKERS).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def enrich_ocr_command(
    ctx: click.Context, collection: str, workers: int | None, as_json: bool
) -> None:
    """Read the text in every image not read yet, and index it with captions, labels and file
    names for keyword and hybrid search. A killed run resumes where it stopped."""
    from pixseek.store import open_store
    from pixseek.store.base import check_collection_name

    settings = settings_from(ctx)
    check_collection_name(collection)
    store = open_store(settings)
    summary = enrich_ocr(store, settings, collection, workers)
    store.close()
    print_summary(summary, as_json)


@enrich_command.command("hashes")
@click.option("--collection", "-c", required=True, help="Collection to enrich.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def enrich_hashes_command(ctx: click.Context, collection: str, as_json: bool) -> None:
    """Perceptual hashes (near duplicates, `--collapse near`) for points that have none; the
    same pass as `pixseek duplicates --update-hashes`. A killed run resumes where it stopped."""
    from pixseek.cli.duplicates import update_hashes_and_report
    from pixseek.store import open_store

    settings = settings_from(ctx)
    store = open_store(settings)
    update_hashes_and_report(store, collection, settings.max_image_pixels, as_json)
    store.close()


def enrich_ocr(
    store: VectorStore, settings: Settings, collection: str, workers: int | None = None
) -> EnrichSummary:
    """The OCR pass, shared with `pixseek ingest --ocr`."""
    from pixseek.errors import Misconfigured
    from pixseek.ingest.enrich import run_enrich
    from pixseek.ingest.ocr import OcrUnavailable, ocr_engine

    try:
        engine = ocr_engine(threads=1, max_side=settings.ocr_max_side)
    except OcrUnavailable as exc:
        raise Misconfigured(str(exc)) from None
    return run_enrich(
        store,
        collection,
        engine,
        workers=workers or settings.ocr_workers,
        max_pixels=settings.max_image_pixels,
        on_progress=_progress(),
    )


def _progress():
    """A line per 5% of the collection read (the same on a terminal and in logs)."""
    step = {"next": 0.0}

    def report(done: int, total: int) -> None:
        if total and done / total >= step["next"]:
            click.echo(f"enrich ocr: {done} images read ({done}/{total} points)", err=True)
            step["next"] = done / total + 0.05

    return report


def print_summary(summary: EnrichSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
        return
    rate = summary.as_dict()["images_per_second"]
    added = ", keyword index added" if summary.index_added else ""
    click.echo(
        f"{summary.collection}: OCR on {summary.ocr_done} images ({summary.with_text} with text), "
        f"keywords refreshed on {summary.keywords_refreshed}, {summary.already_done} already "
        f"done, failed {len(summary.failed)}{added} ({summary.seconds:.1f}s, {rate} images/s)"
    )
    for failure in summary.failed[:20]:
        click.echo(f"  failed: {failure['source']}: {failure['reason']}", err=True)
