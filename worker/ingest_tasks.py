"""The Celery task behind `pixseek ingest --distributed`: read, decode and embed one shard.

A shard is a list of planned `Fetch` items (ingest/plan.py) with the collection, the model the
collection uses and the model batch size. The worker carries it out with the in-process
pipeline's own embed step (`embed_and_write`), then either
- upserts the points itself (`write: "worker"`: a Qdrant server, or the store of a `pixseek serve`
  through RemoteStore: stores that many processes can write at once), or
- sends them back in the task result (`write: "coordinator"`: the embedded store or
  qdrant-client's local mode, which only the process that opened it may write; vectors travel
  as base64 float32, exact).
Either way the result carries the bookkeeping the coordinator's finish step needs (ids stored,
content hashes, copies, failures), so the summary is the one a local run prints.

Exactly once: point ids are derived from content + location, so a shard delivered again (its
worker was SIGKILLed: late acks, reject on worker lost, the broker's visibility timeout) is simply
redone; upserting the same ids again stores nothing twice. A shard that keeps killing workers is
failed after MAX_DELIVERIES, like a generation job.
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
from celery import Celery, Task
from pixseek.worker.app import MAX_DELIVERIES, MAX_RETRIES, JobFailed
from pixseek.worker.tasks import JobControl, backoff_seconds, control_client, is_transient

from pixseek.config import Settings
from pixseek.errors import PixseekError
from pixseek.media import read_image_bytes
from pixseek.store.base import PointRecord, SparseVector, Vector

log = logging.getLogger(__name__)

INGEST_TASK = "pixseek.ingest_shard"


def holds_store_in_process(store: Any) -> bool:
    """The embedded store, or qdrant-client's local mode: only the process that opened it may
    write it (a Qdrant server, or a `pixseek serve`'s store through RemoteStore, take writers
    from anywhere)."""
    local = str(getattr(store, "url", "")).startswith("local:")
    return local or isinstance(getattr(store, "root", None), Path)


# -- work items and points as JSON ------------------------------------------------------------


def encode_fetch(fetch: Any) -> dict[str, Any]:
    item = fetch.item
    return {
        "root": item.root,
        "source": item.source,
        "size": item.size,
        "mtime": item.mtime,
        "labels": fetch.labels,
        "replaces": sorted(fetch.replaces),
    }


def decode_fetch(data: dict[str, Any]) -> Any:
    from pixseek.ingest.plan import Fetch
    from pixseek.ingest.sources import ImageFile

    root, source = str(data["root"]), str(data["source"])

    def read() -> bytes:
        content = read_image_bytes({"root": root, "source": source})
        if content is None:
            raise OSError(f"{source} is gone or unreadable on worker {os.uname().nodename}")
        return content

    item = ImageFile(root, source, int(data["size"]), float(data["mtime"]), read)
    return Fetch(item, dict(data["labels"]), frozenset(data["replaces"]))


def encode_vector(vector: Vector) -> dict[str, Any]:
    if isinstance(vector, SparseVector):
        return {"sparse": [list(vector.indices), list(vector.values)]}
    array = np.ascontiguousarray(np.asarray(vector, dtype=np.float32))
    return {"f32": base64.b64encode(array.tobytes()).decode("ascii")}


def decode_vector(data: dict[str, Any]) -> Vector:
    if "sparse" in data:
        indices, values = data["sparse"]
        return SparseVector([int(i) for i in indices], [float(v) for v in values])
    return np.frombuffer(base64.b64decode(data["f32"]), dtype=np.float32)


def encode_point(point: PointRecord) -> dict[str, Any]:
    vectors = {name: encode_vector(v) for name, v in point.vectors.items()}
    return {"id": point.id, "vectors": vectors, "payload": point.payload}


def decode_point(data: dict[str, Any]) -> PointRecord:
    vectors = {name: decode_vector(v) for name, v in data["vectors"].items()}
    return PointRecord(str(data["id"]), vectors, dict(data["payload"]))


class ShardStore:
    """The store as the embed step of one shard sees it. With `store` (a shared one), writes go
    straight to it; without, they are kept and travel back in the task result. Either way it
    notes which file each stored point came from."""

    def __init__(self, store: Any, vectors: dict[str, int], sparse_vectors: list[str]) -> None:
        self.store = store
        self.vectors = vectors  # what embed_and_write reads of the collection
        self.sparse_vectors = sparse_vectors
        self.points: list[PointRecord] = []
        self.payloads: list[tuple[str, dict[str, Any]]] = []
        self.keys: dict[str, tuple[str, str]] = {}  # point id -> (root, source)

    def get_collection(self, name: str) -> ShardStore:
        return self

    def upsert(self, name: str, points: list[PointRecord]) -> None:
        for point in points:
            self.keys[point.id] = (point.payload["root"], point.payload["source"])
        if self.store is not None:
            self.store.upsert(name, points)
        else:
            self.points.extend(points)

    def set_payload(self, name: str, point_id: str, payload: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.set_payload(name, point_id, payload)
        else:
            self.payloads.append((point_id, payload))


# -- the shard ---------------------------------------------------------------------------------

_process: dict[str, Any] = {}  # this pool process's embedders and store, made on first use


def _embedders(settings: Settings) -> Any:
    if "embedders" not in _process:
        from pixseek.models.bundle import load_image_embedders

        _process["embedders"] = load_image_embedders(settings)
    return _process["embedders"]


def _shared_store(settings: Settings) -> Any:
    if "store" not in _process:
        from pixseek.store import open_store

        store = open_store(settings)
        if holds_store_in_process(store):
            store.close()
            raise JobFailed(
                "this worker has no shared store to write to: set PIXSEEK_QDRANT_URL as the "
                "ingesting process does, or run it where `pixseek serve` holds the data dir"
            )
        _process["store"] = store
    return _process["store"]


def run_shard(settings: Settings, spec: dict[str, Any]) -> dict[str, Any]:
    """Embed one shard; returns its outcome (and, for the coordinator to write, its points)."""
    from pixseek.ingest.embed import Writer, embed_and_write
    from pixseek.ingest.plan import Plan
    from pixseek.ingest.state import CollectionState

    embedders = _embedders(settings)
    models = embedders.metadata["models"]
    if models != spec["models"]:
        raise JobFailed(
            f"this worker embeds with {models}, the collection {spec['collection']!r} with "
            f"{spec['models']}: configure the worker's models like the ingesting process"
        )
    fetches = [decode_fetch(item) for item in spec["items"]]
    # Ids already stored at these locations: a file whose content did not change is only touched.
    known = {point_id for fetch in fetches for point_id in fetch.replaces}
    shared = _shared_store(settings) if spec["write"] == "worker" else None
    store = ShardStore(shared, dict(spec["vectors"]), list(spec["sparse_vectors"]))
    writer = Writer()
    writer.start()
    try:
        outcome = embed_and_write(
            store,
            embedders,
            CollectionState(ids=known),
            Plan(work=list(fetches)),
            spec["collection"],
            batch_size=int(spec["batch_size"]),
            decode_workers=settings.decode_workers,
            max_pixels=int(spec["max_pixels"]),
            writer=writer,
        )
    finally:
        writer.finish()
    index = {fetch.item.key: n for n, fetch in enumerate(fetches)}
    result: dict[str, Any] = {
        "stored": sorted(outcome.stored),
        "embedded": [[index[store.keys[i]], sha, i] for sha, i in outcome.embedded.items()],
        "copies": [[index[c.fetch.item.key], c.sha256, c.point_id] for c in outcome.copies],
        "failed_content": outcome.failed_content,
        "replaces": {new: sorted(old) for new, old in outcome.replaces.items()},
        "added": outcome.added,
        "updated": outcome.updated,
        "failed": [list(failure) for failure in outcome.failed],
        "model_seconds": outcome.model_seconds,
    }
    if shared is None:
        result["points"] = [encode_point(p) for p in store.points]
        result["payloads"] = [list(update) for update in store.payloads]
    return result


def register(app: Celery) -> None:
    @app.task(
        name=INGEST_TASK,
        bind=True,
        shared=False,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=MAX_RETRIES,
        throws=(JobFailed,),
    )
    def ingest_shard(self: Task, spec: dict[str, Any]) -> dict[str, Any]:
        settings = cast(Settings, self.app.pixseek_settings)
        control = JobControl(control_client(settings), self.request.id)
        deliveries = control.count_delivery(self.request.retries)
        log.info(
            "ingest shard %s: %d files, delivery %d",
            self.request.id,
            len(spec["items"]),
            deliveries,
        )
        if deliveries > MAX_DELIVERIES:
            raise JobFailed(
                f"the worker running this ingest shard died {deliveries - 1} times (killed, or "
                "out of memory on one of its images?); giving up, see the worker logs"
            )
        try:
            return run_shard(settings, spec)
        except Exception as exc:
            if is_transient(exc) and self.request.retries < MAX_RETRIES:
                countdown = backoff_seconds(self.request.retries, settings)
                log.warning(
                    "ingest shard %s: retrying in %.0f s: %s", self.request.id, countdown, exc
                )
                raise self.retry(exc=exc, countdown=countdown) from None
            if isinstance(exc, PixseekError):
                raise JobFailed(exc.api_message) from None
            raise
