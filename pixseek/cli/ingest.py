"""`pixseek ingest`: the command-line entry point of the ingest stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pixseek.cli.context import settings_from

if TYPE_CHECKING:
    from pixseek.ingest.pipeline import IngestSummary


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True)
@click.option("--collection", "-c", required=True, help="Collection to create or update.")
@click.option("--labels", "labels_file", type=click.Path(), help="Sidecar labels: CSV or JSONL.")
@click.option("--labels-from-folders", is_flag=True, help="Use each file's parent folder as label.")
@click.option("--prune", is_flag=True, help="Remove points whose files are gone from PATHS.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per model batch.")
@click.option(
    "--optimize/--no-optimize",
    default=None,
    help="Build the vector index (HNSW) after the run. Default: when the collection has "
    "20,000+ points and the run changed it (embedded store; a Qdrant server indexes by itself).",
)
@click.option(
    "--quantization",
    type=click.Choice(["none", "int8", "binary"]),
    help="New collection: keep int8 or binary codes of the vectors for the index and rescore "
    "with the originals (large collections). Default: none (exact float32).",
)
@click.option(
    "--on-disk",
    is_flag=True,
    default=None,
    help="New collection: vectors, payloads and their indexes on disk.",
)
@click.option("--hnsw-m", type=click.IntRange(4, 4096), help="New collection: HNSW edges/node.")
@click.option(
    "--hnsw-ef-construct", type=click.IntRange(4, 4096), help="New collection: HNSW build breadth."
)
@click.option(
    "--ocr",
    is_flag=True,
    help="Also read the text in the images (after embedding, in its own threads) and index it "
    "for keyword and hybrid search; same as `pixseek enrich ocr` afterwards.",
)
@click.option(
    "--distributed",
    is_flag=True,
    help="Decode and embed on the `pixseek worker` processes of PIXSEEK_BROKER_URL's queue "
    "(PIXSEEK_JOB_QUEUE), in shards; plan and finish here. Workers must see PATHS at the same "
    "paths and use the same models.",
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="With --distributed: files per worker task.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def ingest_command(
    ctx: click.Context,
    paths: tuple[str, ...],
    collection: str,
    labels_file: str | None,
    labels_from_folders: bool,
    prune: bool,
    batch_size: int | None,
    optimize: bool | None,
    quantization: str | None,
    on_disk: bool | None,
    hnsw_m: int | None,
    hnsw_ef_construct: int | None,
    ocr: bool,
    distributed: bool,
    shard_size: int,
    as_json: bool,
) -> None:
    """Embed the images under PATHS (folders, images, tar or zip archives) into a collection.

    Re-running is incremental: unchanged files are skipped, changed ones replaced, and a run
    that was killed picks up where it stopped.
    """
    from pixseek.ingest.labels import load_labels
    from pixseek.ingest.pipeline import IngestOptions, run_ingest
    from pixseek.models.bundle import load_image_embedders
    from pixseek.store import open_store
    from pixseek.store.base import check_collection_name

    settings = settings_from(ctx)
    check_collection_name(collection)
    labels = load_labels(Path(labels_file)) if labels_file else None
    options = IngestOptions(
        collection=collection,
        labels=labels,
        labels_from_folders=labels_from_folders,
        prune=prune,
        batch_size=batch_size or settings.batch_size,
        decode_workers=settings.decode_workers,
        max_pixels=settings.max_image_pixels,
        optimize=optimize,
    )
    store = open_store(settings)
    if (quantization, on_disk, hnsw_m, hnsw_ef_construct) != (None, None, None, None):
        from pixseek.store.options import CreateWith, StorageOptions, check_storage_request

        storage = StorageOptions(quantization or "none", bool(on_disk), hnsw_m, hnsw_ef_construct)
        check_storage_request(store.get_collection(collection), storage)
        store = CreateWith(store, storage)
    embedders = load_image_embedders(settings)
    if ocr:  # a missing OCR package fails here, before anything is written
        from pixseek.ingest.ocr import ocr_engine

        ocr_engine(threads=1, max_side=settings.ocr_max_side)
    embed = None
    if distributed:  # checks the broker before anything is planned
        from pixseek.worker.distributed import distributed_embed

        embed = distributed_embed(settings, shard_size)
    summary = run_ingest(store, embedders, list(paths), options, _progress_reporter(), embed)
    enriched = None
    if ocr:
        from pixseek.cli.enrich import enrich_ocr, print_summary

        enriched = enrich_ocr(store, settings, collection)
    store.close()
    if as_json:
        record = summary.as_dict()
        if enriched is not None:
            record["ocr"] = enriched.as_dict()
        click.echo(json.dumps(record))
    else:
        _print_summary(summary)
        if enriched is not None:
            print_summary(enriched, False)


def _progress_reporter():
    """A tqdm bar (images/s, ETA) on a terminal; in logs, a plain line every 5%."""
    if not sys.stderr.isatty():
        step = {"next": 0.0}

        def log_line(done: int, total: int) -> None:
            if total and (done / total >= step["next"] or done == total):
                click.echo(f"ingest: {done}/{total} files", err=True)
                step["next"] = done / total + 0.05

        return log_line
    from tqdm import tqdm

    bar = tqdm(unit="img", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update


def _print_summary(summary: IngestSummary) -> None:
    rate = summary.as_dict()["images_per_second"]
    click.echo(
        f"{summary.collection}: added {summary.added}, updated {summary.updated}, "
        f"skipped {summary.skipped} unchanged, duplicates {summary.duplicates} (stored, embedded "
        "once), "
        f"replaced {summary.replaced}, pruned {summary.pruned}, failed {len(summary.failed)} "
        f"({summary.seconds:.1f}s, {rate} images/s)"
    )
    if summary.index is not None:
        click.echo(
            f"{summary.collection}: {summary.index.describe()} ({summary.optimize_seconds:.1f}s)"
        )
    for warning in summary.warnings:
        click.echo(f"  warning: {warning}", err=True)
    for duplicate in summary.duplicate_files[:50]:
        click.echo(f"  duplicate: {duplicate.source} = {duplicate.same_as} (embedding reused)")
    if len(summary.duplicate_files) > 50:
        click.echo(f"  ... and {len(summary.duplicate_files) - 50} more duplicates (see --json)")
    for failure in summary.failed[:50]:
        click.echo(f"  failed: {failure.source}: {failure.reason}", err=True)
    if len(summary.failed) > 50:
        click.echo(f"  ... and {len(summary.failed) - 50} more (use --json for all)", err=True)
