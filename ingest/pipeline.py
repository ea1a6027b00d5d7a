"""The incremental, crash-safe ingest run: plan -> embed -> write -> finish.

  plan (plan.py): every discovered file becomes a typed work item, without reading images;
  embed + write (embed.py): new content is hashed, decoded and embedded, points are upserted on
      a writer thread;
  finish (here): copies of content already stored reuse its vectors, then, and only then,
      replaced and pruned points are deleted, and the vector index is built when it pays.
Crash safety: a point is written whole (vectors + payload) in one upsert, with an id derived
from the content hash and location, so a re-run after kill -9 finds it and skips it; nothing is
deleted until the run has completed, and a replaced point is deleted only after its successor
is stored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pixseek.ingest.collection import open_for_ingest, record_roots
from pixseek.ingest.embed import EmbedOutcome, Hashed, Writer, embed_and_write
from pixseek.ingest.labels import LabelIndex
from pixseek.ingest.plan import LOCATION_FIELDS, Fetch, Plan, plan, point_id_for
from pixseek.ingest.sources import discover, resolve_inputs, root_of
from pixseek.ingest.state import CollectionState

from pixseek.errors import DiskFull, PixseekError
from pixseek.media import is_archive
from pixseek.models.bundle import ImageEmbedders
from pixseek.store import IndexStatus, PointRecord, VectorStore
from pixseek.store.integrity import require_space

__all__ = [
    "EmbedStep",
    "IngestOptions",
    "IngestSummary",
    "embed_in_process",
    "point_id_for",
    "run_ingest",
]

# Below this many points exact search is as fast as the HNSW index (measured in
# bench/results/search.md), so `optimize=None` skips building it.
AUTO_OPTIMIZE_POINTS = 20_000
COPY_BATCH = 64
# Disk use per stored point besides its vectors (payload, ids, payload indexes; measured ~5 KB).
BYTES_PER_POINT = 8 * 1024


@dataclass
class IngestOptions:
    collection: str
    labels: LabelIndex | None = None
    labels_from_folders: bool = False
    prune: bool = False
    batch_size: int = 32
    decode_workers: int = 2
    max_pixels: int = 178_956_970
    optimize: bool | None = None  # build the vector index after the run; None: when large


@dataclass
class Failure:
    source: str
    reason: str


@dataclass
class Duplicate:
    """A file whose content was already stored: its own point, with the vectors of `same_as`."""

    source: str
    same_as: str


@dataclass
class IngestSummary:
    collection: str
    added: int = 0
    updated: int = 0
    skipped: int = 0
    duplicates: int = 0
    replaced: int = 0
    pruned: int = 0
    failed: list[Failure] = field(default_factory=list)
    duplicate_files: list[Duplicate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the ingest itself, without optimize_seconds
    model_seconds: float = 0.0
    optimize_seconds: float = 0.0
    index: IndexStatus | None = None  # set when the run optimized the collection

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["images_per_second"] = round(self.added / self.seconds, 2) if self.seconds else 0.0
        return data


def location(root: str, source: str) -> str:
    """How a file is named to people: `archive.tar:member` or `folder/relative/path`."""
    return f"{root}:{source}" if is_archive(Path(root)) else os.path.join(root, source)


Progress = Callable[[int, int], None]
# The embed + write step: carries out the plan's Fetch/Keep/Reject items, returns what it stored.
EmbedStep = Callable[
    [VectorStore, ImageEmbedders, CollectionState, Plan, IngestOptions, Progress | None],
    EmbedOutcome,
]


def run_ingest(
    store: VectorStore,
    embedders: ImageEmbedders,
    paths: list[str],
    options: IngestOptions,
    on_progress: Progress | None = None,
    embed: EmbedStep | None = None,
) -> IngestSummary:
    """Ingest `paths` into the collection; `on_progress(done, total)` is called per file.

    `embed` replaces the in-process embed step (`embed_in_process`), e.g. by one that spreads
    the Fetch items over Celery workers (worker/distributed.py); plan and finish stay here."""
    started = time.perf_counter()
    inputs = resolve_inputs(paths)
    summary = IngestSummary(collection=options.collection)
    state = open_for_ingest(store, embedders, options.collection, summary.warnings)
    items = [item for path in inputs for item in discover(path)]
    work = plan(state, items, options.labels, options.labels_from_folders)
    summary.warnings.extend(work.warnings)
    _preflight(store, embedders, work)
    roots = {root_of(path) for path in inputs}
    try:
        outcome = (embed or embed_in_process)(store, embedders, state, work, options, on_progress)
        _count(summary, outcome)
        _copy_identical(store, options.collection, state, outcome, summary)
        prune_roots = roots if options.prune else set()
        _delete_superseded(store, options.collection, state, work, outcome, prune_roots, summary)
        record_roots(store, options.collection, roots)
    except DiskFull as exc:  # nothing was deleted yet: what is stored is whole and kept
        stored = _points(store, options.collection) - len(state.ids)
        device = exc.message.split(";")[0]  # "no space left on DEVICE (N MB free, ...)"
        raise DiskFull(
            f"{device}; {max(0, stored)} points of this run are stored, nothing is damaged: "
            "rerun when space is free to store the rest"
        ) from None
    summary.seconds = time.perf_counter() - started
    if _should_optimize(store, summary, options):
        optimize_started = time.perf_counter()
        summary.index = store.optimize(options.collection)
        summary.optimize_seconds = time.perf_counter() - optimize_started
    return summary


def embed_in_process(
    store: VectorStore,
    embedders: ImageEmbedders,
    state: CollectionState,
    work: Plan,
    options: IngestOptions,
    on_progress: Progress | None,
) -> EmbedOutcome:
    writer = Writer()
    writer.start()
    try:
        return embed_and_write(
            store,
            embedders,
            state,
            work,
            options.collection,
            batch_size=options.batch_size,
            decode_workers=options.decode_workers,
            max_pixels=options.max_pixels,
            writer=writer,
            on_progress=on_progress,
        )
    finally:
        writer.finish()  # interrupted or not: store the batches already embedded


def _preflight(store: VectorStore, embedders: ImageEmbedders, work: Plan) -> None:
    """Refuse a run that cannot fit on the embedded store's disk before embedding anything."""
    root = getattr(store, "root", None)
    if not isinstance(root, Path):
        return  # a Qdrant server: its disk is not ours to measure
    new = sum(isinstance(w, Fetch) for w in work.work)
    per_point = BYTES_PER_POINT + 8 * sum(embedders.vector_sizes.values())
    require_space(root, new * per_point, f"storing {new} new images")


def _points(store: VectorStore, collection: str) -> int:
    try:
        info = store.get_collection(collection)
    except PixseekError:
        return 0
    return info.points if info is not None else 0


def _count(summary: IngestSummary, outcome: EmbedOutcome) -> None:
    summary.added = outcome.added
    summary.updated = outcome.updated
    summary.skipped = outcome.skipped
    summary.model_seconds = outcome.model_seconds
    summary.failed.extend(Failure(source, reason) for source, reason in outcome.failed)


def _copy_identical(
    store: VectorStore,
    collection: str,
    state: CollectionState,
    outcome: EmbedOutcome,
    summary: IngestSummary,
) -> None:
    """Store each copy of already-stored content as its own point with the original's vectors."""
    by_source: dict[str, list[Hashed]] = {}
    for hashed in outcome.copies:
        source_id = outcome.embedded.get(hashed.sha256) or state.by_sha.get(hashed.sha256)
        if source_id is None:
            why = outcome.failed_content.get(hashed.sha256, "it was not stored")
            summary.failed.append(
                Failure(hashed.fetch.item.source, f"same content as a file that failed: {why}")
            )
            continue
        by_source.setdefault(source_id, []).append(hashed)
    source_ids = sorted(by_source)
    for start in range(0, len(source_ids), COPY_BATCH):
        originals = store.retrieve(
            collection, source_ids[start : start + COPY_BATCH], with_vectors=True
        )
        points = []
        for original in originals:
            picture = {k: v for k, v in original.payload.items() if k not in LOCATION_FIELDS}
            same_as = location(
                str(original.payload.get("root", "")), str(original.payload.get("source", ""))
            )
            for hashed in by_source[original.id]:
                points.append(
                    PointRecord(hashed.point_id, original.vectors, {**picture, **hashed.payload})
                )
                summary.duplicate_files.append(
                    Duplicate(location(hashed.fetch.item.root, hashed.fetch.item.source), same_as)
                )
                outcome.stored.add(hashed.point_id)
                outcome.replaces[hashed.point_id] = hashed.fetch.replaces
        store.upsert(collection, points)
    summary.duplicates = len(summary.duplicate_files)


def _delete_superseded(
    store: VectorStore,
    collection: str,
    state: CollectionState,
    work: Plan,
    outcome: EmbedOutcome,
    prune_roots: set[str],
    summary: IngestSummary,
) -> None:
    """The run completed: now, and only now, remove what it replaced, and pruned files."""
    keep = work.kept_ids | outcome.stored
    replaced: set[str] = set()
    for new_id, old_ids in outcome.replaces.items():
        if new_id in keep:
            replaced.update(old_ids - keep)
    pruned: set[str] = set()
    for key, entry in state.entries_under(prune_roots):
        if key not in work.seen_keys and entry.id not in keep:
            pruned.add(entry.id)
    store.delete(collection, sorted(replaced | pruned))
    summary.replaced = len(replaced - pruned)
    summary.pruned = len(pruned)


def _should_optimize(store: VectorStore, summary: IngestSummary, options: IngestOptions) -> bool:
    if options.optimize is not None:
        return options.optimize
    info = store.get_collection(options.collection)
    if info is not None and info.index_pending:  # a build was interrupted (kill -9): resume it
        return True
    changed = (
        summary.added + summary.updated + summary.duplicates + summary.replaced + summary.pruned
    )
    if not changed:
        return False
    return info is not None and info.points >= AUTO_OPTIMIZE_POINTS
