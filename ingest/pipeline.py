"""The incremental, crash-safe ingest run: discover -> skip/hash -> decode -> embed -> upsert.

Threads, all with bounded queues so memory stays flat however large the archive:
  planner (1 thread): walks the candidates in order, skips unchanged files without opening them,
      reads and hashes the rest, and hands decoding to the decode pool;
  decode pool (N threads): decode, orient, preprocess into model tensors (PIL and torch release
      the GIL, so this overlaps with inference);
  main thread: batches decoded tensors and runs the model;
  writer (1 thread): upserts points and payload updates.
Crash safety: a point is written whole (vectors + payload) in one upsert, with an id derived
from the file's sha256, so a re-run after kill -9 finds it and skips it; nothing is deleted
until the run has completed, and a replaced point is deleted only after its successor is stored.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from pixseek.ingest.decode import ImageRejected, decode_image
from pixseek.ingest.labels import LabelIndex, folder_label
from pixseek.ingest.sources import ImageFile, Skipped, discover, resolve_inputs, root_of
from pixseek.ingest.state import CollectionState

from pixseek.models.bundle import ImageEmbedders
from pixseek.store import IndexStatus, PointRecord, VectorStore

# Fixed namespace: the same bytes get the same point id on every machine.
POINT_NAMESPACE = uuid.UUID("6b3c1f0e-8f3a-4c2e-9d51-7a0c2b9e4f11")
# Below this many points exact search is as fast as the HNSW index (1.1 vs 1.2 ms at 10k,
# 12.6 vs 4.5 ms at 100k; bench/results/search.md), so `optimize=None` skips building it.
AUTO_OPTIMIZE_POINTS = 20_000
_DONE = object()


def point_id_for(sha256_hex: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, sha256_hex))


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
class IngestSummary:
    collection: str
    added: int = 0
    updated: int = 0
    skipped: int = 0
    duplicates: int = 0
    replaced: int = 0
    pruned: int = 0
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0  # the ingest itself, without optimize_seconds
    model_seconds: float = 0.0
    optimize_seconds: float = 0.0
    index: IndexStatus | None = None  # set when the run optimized the collection

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["images_per_second"] = round(self.added / self.seconds, 2) if self.seconds else 0.0
        return data


@dataclass
class _Decode:
    future: Future
    point_id: str
    payload: dict[str, Any]
    source: str


@dataclass
class _Update:
    point_id: str
    payload: dict[str, Any]


@dataclass
class _Event:
    kind: str  # "skip", "duplicate", "fail"
    source: str = ""
    reason: str = ""


class _Planner:
    """Decides per candidate what to do; runs sequentially in its own thread."""

    def __init__(self, state: CollectionState, options: IngestOptions, embedders: ImageEmbedders):
        self.state = state
        self.options = options
        self.embedders = embedders
        self.seen_keys: set[tuple[str, str]] = set()
        self.seen_ids: set[str] = set()  # stored ids that the archive still has: never deleted
        self.claimed: set[str] = set()  # ids produced by this run
        self.replaced: dict[str, set[str]] = {}  # new id -> ids it replaces at the same path
        self.model_size = embedders.clip.image_size

    def label_payload(self, item: ImageFile) -> dict[str, Any] | None:
        if self.options.labels is not None:
            entry = self.options.labels.lookup(item.source)
            labels = entry.payload() if entry else {"labels": []}
            if self.options.labels_from_folders and not labels["labels"]:
                labels["labels"] = folder_label(item.source)
            return labels
        if self.options.labels_from_folders:
            return {"labels": folder_label(item.source)}
        return None

    def plan(self, items: list[ImageFile | Skipped], pool: ThreadPoolExecutor) -> Iterator[Any]:
        for item in items:
            if isinstance(item, Skipped):
                yield _Event("fail", item.source, item.reason)
                continue
            yield from self._plan_one(item, pool)

    def _plan_one(self, item: ImageFile, pool: ThreadPoolExecutor) -> Iterator[Any]:
        self.seen_keys.add(item.key)
        stored = self.state.by_key.get(item.key, [])
        labels = self.label_payload(item)
        current = next((e for e in stored if e.unchanged(item.size, item.mtime)), None)
        if current is not None:
            self.seen_ids.add(current.id)
            self.claimed.add(current.id)
            self._mark_replaced(current.id, stored)
            if labels is not None and labels != current.labels:
                yield _Update(current.id, labels)
            else:
                yield _Event("skip", item.source)
            return
        try:
            data = item.read()
        except OSError as exc:
            self.seen_ids.update(e.id for e in stored)  # unreadable now: keep what we had
            yield _Event("fail", item.source, f"cannot read file: {exc}")
            return
        digest = hashlib.sha256(data).hexdigest()
        point_id = point_id_for(digest)
        if point_id in self.claimed:
            self.seen_ids.update(e.id for e in stored)
            yield _Event(
                "duplicate", item.source, f"same content as an earlier file ({digest[:12]})"
            )
            return
        self.claimed.add(point_id)
        self._mark_replaced(point_id, stored)
        payload: dict[str, Any] = {
            "root": item.root,
            "source": item.source,
            "bytes": item.size,
            "mtime": item.mtime,
            "sha256": digest,
            **(labels or {"labels": []}),
        }
        if point_id in self.state.ids:  # same picture already stored (touched or moved file)
            self.seen_ids.add(point_id)
            yield _Update(point_id, payload)
            return
        future = pool.submit(self._decode, data)
        yield _Decode(future, point_id, payload, item.source)

    def _mark_replaced(self, point_id: str, stored: list) -> None:
        others = {e.id for e in stored if e.id != point_id}
        if others:
            self.replaced.setdefault(point_id, set()).update(others)

    def _decode(self, data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        decoded = decode_image(data, self.options.max_pixels, self.model_size)
        tensors = self.embedders.preprocess(decoded.image)
        extra = {"width": decoded.width, "height": decoded.height, "format": decoded.format}
        extra.update(decoded.exif)
        return tensors, extra


class _Writer(threading.Thread):
    """Applies store writes in order, off the main thread."""

    def __init__(self, store: VectorStore, collection: str) -> None:
        super().__init__(name="pixseek-writer", daemon=True)
        self.store = store
        self.collection = collection
        self.jobs: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (job := self.jobs.get()) is not _DONE:
            if self.error is not None:
                continue
            try:
                job()
            except BaseException as exc:  # re-raised in the main thread
                self.error = exc

    def submit(self, job: Callable[[], None]) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put(job)

    def finish(self) -> None:
        self.jobs.put(_DONE)
        self.join()
        if self.error is not None:
            raise self.error


def run_ingest(
    store: VectorStore,
    embedders: ImageEmbedders,
    paths: list[str],
    options: IngestOptions,
    on_progress: Callable[[int, int], None] | None = None,
) -> IngestSummary:
    """Ingest `paths` into the collection; `on_progress(done, total)` is called per file."""
    started = time.perf_counter()
    inputs = resolve_inputs(paths)
    summary = IngestSummary(collection=options.collection)
    info = store.get_collection(options.collection)
    if info is None:
        store.create_collection(options.collection, embedders.vector_sizes, embedders.metadata)
        state = CollectionState()
    else:
        embedders.check_compatible(options.collection, info.metadata, info.vectors)
        state = CollectionState.load(store, options.collection)

    items: list[ImageFile | Skipped] = [item for path in inputs for item in discover(path)]
    total = len(items)
    planner = _Planner(state, options, embedders)
    writer = _Writer(store, options.collection)
    writer.start()
    events: queue.Queue = queue.Queue(maxsize=options.batch_size * 3)
    pool = ThreadPoolExecutor(max(1, options.decode_workers), thread_name_prefix="pixseek-decode")

    def produce() -> None:
        try:
            for event in planner.plan(items, pool):
                events.put(event)
        except BaseException as exc:
            events.put(exc)
        events.put(_DONE)

    producer = threading.Thread(target=produce, name="pixseek-planner", daemon=True)
    producer.start()
    batch: list[tuple[_Decode, dict[str, torch.Tensor], dict[str, Any]]] = []
    done = 0
    stored_ids: set[str] = set()

    def flush_batch() -> None:
        if not batch:
            return
        model_started = time.perf_counter()
        stacked = {name: torch.stack([t[name] for _, t, _ in batch]) for name in batch[0][1]}
        vectors = embedders.embed_pixels(stacked)
        summary.model_seconds += time.perf_counter() - model_started
        points = [
            PointRecord(
                id=job.point_id,
                vectors={name: vectors[name][row] for name in vectors},
                payload={**job.payload, **extra},
            )
            for row, (job, _, extra) in enumerate(batch)
        ]
        writer.submit(lambda pts=points: store.upsert(options.collection, pts))
        summary.added += len(points)
        stored_ids.update(job.point_id for job, _, _ in batch)
        batch.clear()

    try:
        while (event := events.get()) is not _DONE:
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, _Decode):
                try:
                    tensors, extra = event.future.result()
                except ImageRejected as exc:
                    summary.failed.append(Failure(event.source, str(exc)))
                    planner.seen_ids.update(planner.replaced.pop(event.point_id, set()))
                else:
                    batch.append((event, tensors, extra))
                    if len(batch) >= options.batch_size:
                        flush_batch()
            elif isinstance(event, _Update):
                writer.submit(
                    lambda e=event: store.set_payload(options.collection, e.point_id, e.payload)
                )
                summary.updated += 1
                stored_ids.add(event.point_id)
            elif event.kind == "skip":
                summary.skipped += 1
            elif event.kind == "duplicate":
                summary.duplicates += 1
            else:
                summary.failed.append(Failure(event.source, event.reason))
            done += 1
            if on_progress is not None:
                on_progress(done, total)
        flush_batch()
        writer.finish()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if writer.is_alive():  # interrupted: still store the batches already embedded
            writer.jobs.put(_DONE)
            writer.join(timeout=60)

    # The run completed: now, and only now, remove what is no longer there.
    keep = planner.seen_ids | stored_ids
    replaced: set[str] = set()
    for new_id, old_ids in planner.replaced.items():
        if new_id in keep:
            replaced.update(old_ids - keep)
    pruned: set[str] = set()
    if options.prune:
        roots = {root_of(path) for path in inputs}
        for key, entry in state.entries_under(roots):
            if key not in planner.seen_keys and entry.id not in keep:
                pruned.add(entry.id)
    store.delete(options.collection, sorted(replaced | pruned))
    summary.replaced = len(replaced - pruned)
    summary.pruned = len(pruned)
    summary.seconds = time.perf_counter() - started
    if _should_optimize(store, summary, options):
        optimize_started = time.perf_counter()
        summary.index = store.optimize(options.collection)
        summary.optimize_seconds = time.perf_counter() - optimize_started
    return summary


def _should_optimize(store: VectorStore, summary: IngestSummary, options: IngestOptions) -> bool:
    if options.optimize is not None:
        return options.optimize
    changed = summary.added + summary.updated + summary.replaced + summary.pruned
    if not changed:
        return False
    info = store.get_collection(options.collection)
    return info is not None and info.points >= AUTO_OPTIMIZE_POINTS
