"""`pixseek enrich ocr`: OCR and the keyword index for the points of an existing collection.

Incremental and resumable: a point is done once its payload has `ocr_engine` (written last,
after its `text` vector and OCR text), so a run killed at any moment (even kill -9) leaves every
point either done or untouched, and the next run only reads the rest. The same pass refreshes
the `keywords` field and `text` vector of points whose captions, labels or file name changed
(cheap: no image is read). OCR runs in its own bounded thread pool; the images are read back
from the folder or archive they were ingested from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from pixseek.ingest.ocr import OCR_ENGINE_FIELD, OcrResult, RapidOcrEngine

from pixseek.decode import ImageRejected, decode_image
from pixseek.errors import CollectionNotFound
from pixseek.keywords import KEYWORDS_FIELD, keyword_fields, keyword_text
from pixseek.media import read_image_bytes
from pixseek.store import VectorStore
from pixseek.store.base import TEXT_VECTOR

OCR_METADATA_KEY = "ocr"  # the collection's metadata: which OCR engine enriched it
READ_FIELDS = ["root", "source", "labels", "captions", "ocr", KEYWORDS_FIELD, OCR_ENGINE_FIELD]


@dataclass
class EnrichSummary:
    collection: str
    ocr_done: int = 0  # points OCR'd in this run
    with_text: int = 0  # of those, points where text was found
    keywords_refreshed: int = 0  # points whose keyword index changed without OCR
    already_done: int = 0
    index_added: bool = False  # the collection got its `text` vector in this run
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    ocr_seconds: float = 0.0  # summed over the OCR threads

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["images_per_second"] = round(self.ocr_done / self.seconds, 2) if self.seconds else 0.0
        return data


class OcrPool:
    """Decode + OCR in `workers` threads; `submit` blocks while `pending` images are in flight,
    so memory stays flat however large the collection."""

    def __init__(self, engine: RapidOcrEngine, workers: int, max_pixels: int, pending: int = 0):
        self.engine = engine
        self.max_pixels = max_pixels
        self.executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="pixseek-ocr")
        self.slots = threading.BoundedSemaphore(pending or 4 * max(1, workers))

    def submit(self, data: bytes) -> Future[OcrResult]:
        self.slots.acquire()
        future = self.executor.submit(self._read, data)
        future.add_done_callback(lambda _: self.slots.release())
        return future

    def _read(self, data: bytes) -> OcrResult:
        try:  # JPEG draft decoding down to about max_side: huge photos cost little
            image = decode_image(data, self.max_pixels, self.engine.max_side // 2).image
        except ImageRejected as exc:
            return OcrResult(error=str(exc))
        return self.engine.read(image)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _todo(store: VectorStore, collection: str, ocr: bool) -> Iterator[tuple[str, dict, bool, bool]]:
    """(point id, payload, needs OCR, keyword index stale) for every point."""
    for point in store.scroll(collection, fields=READ_FIELDS):
        needs_ocr = ocr and OCR_ENGINE_FIELD not in point.payload
        stale = keyword_text(point.payload) != point.payload.get(KEYWORDS_FIELD)
        yield point.id, point.payload, needs_ocr, stale


def write_keywords(store: VectorStore, collection: str, point_id: str, payload: dict) -> None:
    """The `text` vector first, then the payload (with `ocr_engine`, the done marker, if any)."""
    fields, vectors = keyword_fields(payload)
    if vectors:
        store.update_vectors(collection, {point_id: vectors})
    update = {k: v for k, v in payload.items() if k not in ("root", "source", "labels", "captions")}
    store.set_payload(collection, point_id, {**update, **fields})


def run_enrich(
    store: VectorStore,
    collection: str,
    engine: RapidOcrEngine | None,
    workers: int = 2,
    max_pixels: int = 178_956_970,
    on_progress: Callable[[int, int], None] | None = None,
) -> EnrichSummary:
    """OCR the points that lack it (when `engine` is given) and refresh stale keyword indexes;
    `on_progress(done, points)` after each image read (points: the collection's size)."""
    started = time.perf_counter()
    summary = EnrichSummary(collection)
    info = store.get_collection(collection)
    if info is None:
        raise CollectionNotFound(collection)
    if TEXT_VECTOR not in info.sparse_vectors:
        summary.index_added = store.add_sparse_vector(collection, TEXT_VECTOR)
    if engine is not None and not (info.metadata or {}).get(OCR_METADATA_KEY):
        # Search's auto mode goes hybrid on collections with OCR text (search/keyword.py).
        store.update_metadata(collection, {**info.metadata, OCR_METADATA_KEY: engine.identifier})
    pool = OcrPool(engine, workers, max_pixels) if engine is not None else None
    pending: list[tuple[str, dict, Future[OcrResult]]] = []
    total = info.points

    def finish(point_id: str, payload: dict, future: Future[OcrResult]) -> None:
        result = future.result()
        summary.ocr_seconds += result.seconds
        if result.error is not None:
            summary.failed.append({"source": str(payload.get("source")), "reason": result.error})
        summary.with_text += bool(result.lines)
        write_keywords(store, collection, point_id, {**payload, **result.payload()})
        summary.ocr_done += 1
        if on_progress is not None:
            on_progress(summary.ocr_done, total)

    try:
        for point_id, payload, needs_ocr, stale in _todo(store, collection, engine is not None):
            if needs_ocr and pool is not None:
                data = read_image_bytes(payload)
                if data is None:  # the file is gone: mark it so later runs do not retry forever
                    error = "image file not found where it was ingested from"
                    future: Future[OcrResult] = Future()
                    future.set_result(OcrResult(error=error))
                else:
                    future = pool.submit(data)
                pending.append((point_id, payload, future))
                while pending and pending[0][2].done():  # write in order, as results arrive
                    finish(*pending.pop(0))
            elif stale:
                write_keywords(store, collection, point_id, payload)
                summary.keywords_refreshed += 1
            else:
                summary.already_done += 1
        for item in pending:
            finish(*item)
    finally:
        if pool is not None:
            pool.close()
    summary.seconds = time.perf_counter() - started
    return summary
