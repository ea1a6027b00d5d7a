"""The embed step of an ingest run: read + hash new files, decode them, run the model, hand points
to the writer.

Threads, all with bounded queues so memory stays flat however large the archive:
  reader (1 thread): reads and hashes the planned `Fetch` items in order, decides per file whether
      its content is new (decode it), already stored at this location (payload update) or stored
      elsewhere (a copy that reuses those vectors, made at the end of the run), and hands decoding
      to the decode pool;
  decode pool (N threads): decode, orient, preprocess into model tensors (PIL and torch release
      the GIL, so this overlaps with inference);
  caller's thread: batches decoded tensors, runs the model, submits upserts to the writer.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from pixseek.ingest.plan import Fetch, Keep, Plan, Reject, point_id_for
from pixseek.ingest.state import CollectionState

from pixseek.decode import ImageRejected, decode_image
from pixseek.keywords import with_keywords
from pixseek.models.bundle import ImageEmbedders
from pixseek.phash import PHASH_VECTOR, hash_vector, phash, to_hex
from pixseek.store import PointRecord, VectorStore
from pixseek.store.base import TEXT_VECTOR

_DONE = object()


@dataclass(frozen=True)
class Hashed:
    """A fetched file whose content hash (and so its point id) is known."""

    fetch: Fetch
    sha256: str
    point_id: str

    @property
    def payload(self) -> dict[str, Any]:
        return self.fetch.payload(self.sha256)


@dataclass
class _Decode:
    hashed: Hashed
    future: Future


@dataclass
class _Update:
    point_id: str
    payload: dict[str, Any]
    replaces: frozenset[str] = frozenset()


@dataclass
class _Copy:
    hashed: Hashed


@dataclass
class _Event:
    kind: str  # "skip" or "fail"
    source: str = ""
    reason: str = ""


@dataclass
class EmbedOutcome:
    """What the embed step stored, and what is left for the finish step."""

    stored: set[str] = field(default_factory=set)  # ids written (embedded or payload-updated)
    embedded: dict[str, str] = field(default_factory=dict)  # sha256 -> id embedded this run
    copies: list[Hashed] = field(default_factory=list)  # identical content: reuse vectors
    failed_content: dict[str, str] = field(default_factory=dict)  # sha256 -> why it failed
    replaces: dict[str, frozenset[str]] = field(default_factory=dict)  # new id -> older ids
    added: int = 0
    updated: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    model_seconds: float = 0.0


class Writer(threading.Thread):
    """Applies store writes in order, off the embedding thread."""

    def __init__(self) -> None:
        super().__init__(name="pixseek-writer", daemon=True)
        self.jobs: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (job := self.jobs.get()) is not _DONE:
            if self.error is not None:
                continue
            try:
                job()
            except BaseException as exc:  # re-raised in the submitting thread
                self.error = exc

    def submit(self, job: Callable[[], None]) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put(job)

    def finish(self) -> None:
        if self.is_alive():
            self.jobs.put(_DONE)
            self.join()
        if self.error is not None:
            raise self.error


class _Reader:
    """Reads and hashes `Fetch` items in plan order and classifies their content."""

    def __init__(self, state: CollectionState, decode: Callable[[bytes], Any]) -> None:
        self.state = state
        self.decode = decode
        self.first_of: dict[str, str] = {}  # sha256 -> id of the first copy decoded this run

    def events(self, work: Plan, pool: ThreadPoolExecutor) -> Iterator[Any]:
        for item in work.work:
            if isinstance(item, Reject):
                yield _Event("fail", item.source, item.reason)
            elif isinstance(item, Keep):
                if item.payload is None:
                    yield _Event("skip", item.item.source)
                else:
                    yield _Update(item.point_id, item.payload)
            else:
                yield self._fetch(item, pool)

    def _fetch(self, fetch: Fetch, pool: ThreadPoolExecutor) -> Any:
        try:
            data = fetch.item.read()
        except OSError as exc:
            return _Event("fail", fetch.item.source, f"cannot read file: {exc}")
        digest = hashlib.sha256(data).hexdigest()
        hashed = Hashed(fetch, digest, point_id_for(digest, fetch.item.root, fetch.item.source))
        if hashed.point_id in self.state.ids:  # same content, same place: only touched
            return _Update(hashed.point_id, hashed.payload, fetch.replaces)
        if digest in self.state.by_sha or digest in self.first_of:
            return _Copy(hashed)
        self.first_of[digest] = hashed.point_id
        return _Decode(hashed, pool.submit(self.decode, data))


def embed_and_write(
    store: VectorStore,
    embedders: ImageEmbedders,
    state: CollectionState,
    work: Plan,
    collection: str,
    *,
    batch_size: int,
    decode_workers: int,
    max_pixels: int,
    writer: Writer,
    on_progress: Callable[[int, int], None] | None = None,
) -> EmbedOutcome:
    """Carry out the plan's embedding and payload updates; copies of stored content are left in
    `outcome.copies` for the finish step (their source may be in a batch not yet written)."""
    outcome = EmbedOutcome()
    model_size = embedders.clip.image_size
    info = store.get_collection(collection)
    hashes = PHASH_VECTOR in getattr(info, "vectors", {})
    keywords = TEXT_VECTOR in getattr(info, "sparse_vectors", [])  # the keyword index

    def decode(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        decoded = decode_image(data, max_pixels, model_size)
        extra = {"width": decoded.width, "height": decoded.height, "format": decoded.format}
        extra.update(decoded.exif)
        if hashes:  # older collections get it from `pixseek duplicates --update-hashes`
            extra[PHASH_VECTOR] = to_hex(phash(decoded.image))
        return embedders.preprocess(decoded.image), extra

    reader = _Reader(state, decode)
    events: queue.Queue = queue.Queue(maxsize=batch_size * 3)
    pool = ThreadPoolExecutor(max(1, decode_workers), thread_name_prefix="pixseek-decode")

    def produce() -> None:
        try:
            for event in reader.events(work, pool):
                events.put(event)
        except BaseException as exc:
            events.put(exc)
        events.put(_DONE)

    threading.Thread(target=produce, name="pixseek-reader", daemon=True).start()
    batch: list[tuple[Hashed, dict[str, torch.Tensor], dict[str, Any]]] = []

    def flush() -> None:
        if not batch:
            return
        started = time.perf_counter()
        stacked = {name: torch.stack([t[name] for _, t, _ in batch]) for name in batch[0][1]}
        vectors = embedders.embed_pixels(stacked)
        outcome.model_seconds += time.perf_counter() - started
        points = [
            PointRecord(
                id=hashed.point_id,
                vectors={**{name: vectors[name][row] for name in vectors}, **hash_vector(extra)},
                payload={**hashed.payload, **extra},
            )
            for row, (hashed, _, extra) in enumerate(batch)
        ]
        # Keyword text + BM25 vector on the writer thread, off the model's path (~0.1 ms/point).
        writer.submit(
            lambda pts=points: store.upsert(
                collection, [with_keywords(p) for p in pts] if keywords else pts
            )
        )
        for hashed, _, _ in batch:
            outcome.stored.add(hashed.point_id)
            outcome.embedded[hashed.sha256] = hashed.point_id
            outcome.replaces[hashed.point_id] = hashed.fetch.replaces
        outcome.added += len(batch)
        batch.clear()

    total, done = len(work.work), 0
    try:
        while (event := events.get()) is not _DONE:
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, _Decode):
                try:
                    tensors, extra = event.future.result()
                except ImageRejected as exc:
                    outcome.failed.append((event.hashed.fetch.item.source, str(exc)))
                    outcome.failed_content[event.hashed.sha256] = str(exc)
                else:
                    batch.append((event.hashed, tensors, extra))
                    if len(batch) >= batch_size:
                        flush()
            elif isinstance(event, _Update):
                writer.submit(lambda e=event: store.set_payload(collection, e.point_id, e.payload))
                outcome.updated += 1
                outcome.stored.add(event.point_id)
                outcome.replaces[event.point_id] = event.replaces
            elif isinstance(event, _Copy):
                outcome.copies.append(event.hashed)
            elif event.kind == "skip":
                outcome.skipped += 1
            else:
                outcome.failed.append((event.source, event.reason))
            done += 1
            if on_progress is not None:
                on_progress(done, total)
        flush()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return outcome
