"""Ingest jobs inside `pixseek serve`: `run_ingest` in a thread of the server, one at a time.

States as for generative jobs: QUEUED, LOADING (the image model, once per server), INGESTING
(progress: files done of total), then SUCCESS (the same summary as `pixseek ingest --json`),
FAILURE (one line) or REVOKED (cancelled: at once when queued, at the next file when running;
what was stored so far is kept, as when `pixseek ingest` is interrupted). Searches keep running
on the same store meanwhile and see the points as they are stored. The index build that a
large run asks for goes to the background indexer (api/indexer.py). Jobs live in memory; the
last MAX_KEPT_JOBS are kept.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pixseek.config import Settings
from pixseek.errors import JobNotFound, PixseekError, first_line
from pixseek.store import VectorStore
from pixseek.store.options import CreateWith, StorageOptions, check_storage_request

log = logging.getLogger("pixseek.api")
MAX_KEPT_JOBS = 200
FINISHED = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


@dataclass
class IngestRequest:
    paths: list[str]
    collection: str
    labels: str | None = None
    labels_from_folders: bool = False
    prune: bool = False
    batch_size: int | None = None
    optimize: bool | None = None
    storage: StorageOptions | None = None  # for a new collection; None: the defaults


class IngestCancelled(Exception):
    pass


@dataclass
class IngestJob:
    job_id: str
    request: IngestRequest
    state: str = "QUEUED"
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def describe(self) -> str:
        if self.state == "SUCCESS" and self.result is not None:
            r = self.result
            return (
                f"done: added {r['added']}, updated {r['updated']}, skipped {r['skipped']}, "
                f"failed {len(r['failed'])} in {r['seconds']:.1f}s"
            )
        if self.state == "FAILURE":
            return f"failed: {self.error}"
        if self.state == "REVOKED":
            return "cancelled"
        if self.state == "INGESTING":
            return f"ingesting {self.progress.get('done', 0)}/{self.progress.get('total', 0)}"
        return self.state.lower()


class IngestJobs:
    def __init__(self, settings: Settings, store: VectorStore) -> None:
        self.settings = settings
        self.store = store
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._embedders: Any = None
        self._embedders_lock = threading.Lock()

    def submit(self, request: IngestRequest) -> IngestJob:
        job = IngestJob(str(uuid.uuid4()), request)
        job.progress = {"collection": request.collection, "submitted_at": time.time()}
        with self._lock:
            self._jobs[job.job_id] = job
            finished = [j for j in self._jobs.values() if j.finished]
            for old in finished[: max(0, len(self._jobs) - MAX_KEPT_JOBS)]:
                del self._jobs[old.job_id]
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="pixseek-ingest")
            self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> IngestJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no ingest job {job_id}: it was never submitted here, or expired")
        return job

    def cancel(self, job_id: str) -> IngestJob:
        job = self.get(job_id)
        with self._lock:
            if not job.finished:
                job.cancel.set()
                job.progress["cancel_requested"] = True
                if job.state == "QUEUED":
                    job.state = "REVOKED"
        return job

    def active(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if not j.finished)

    def close(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                if not job.finished:
                    job.cancel.set()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _image_embedders(self) -> Any:
        from pixseek.models.bundle import load_image_embedders

        with self._embedders_lock:
            if self._embedders is None:
                self._embedders = load_image_embedders(self.settings)
            return self._embedders

    def _set(self, job: IngestJob, state: str, **progress: Any) -> None:
        with self._lock:
            if not job.finished:
                job.state = state
                job.progress.update(progress, updated_at=time.time())

    def _run(self, job: IngestJob) -> None:
        if job.cancel.is_set():
            return
        try:
            self._set(job, "LOADING", stage="loading the image model")
            embedders = self._image_embedders()
            summary = self._ingest(job, embedders)
        except IngestCancelled:
            final = {"state": "REVOKED"}
        except PixseekError as exc:
            final = {"state": "FAILURE", "error": exc.message}
        except Exception as exc:  # the job fails; the server keeps serving
            log.exception("ingest job %s failed", job.job_id)
            final = {"state": "FAILURE", "error": f"internal error ({first_line(exc)})"}
        else:
            final = {"state": "SUCCESS", "result": summary}
        with self._lock:
            job.state = final["state"]
            job.error = final.get("error")
            job.result = final.get("result")

    def _ingest(self, job: IngestJob, embedders: Any) -> dict[str, Any]:
        from pathlib import Path

        from pixseek.ingest.labels import load_labels
        from pixseek.ingest.pipeline import IngestOptions, run_ingest

        request, settings = job.request, self.settings
        labels = load_labels(Path(request.labels)) if request.labels else None
        options = IngestOptions(
            collection=request.collection,
            labels=labels,
            labels_from_folders=request.labels_from_folders,
            prune=request.prune,
            batch_size=request.batch_size or settings.batch_size,
            decode_workers=settings.decode_workers,
            max_pixels=settings.max_image_pixels,
            optimize=request.optimize,
        )
        store = self.store
        if request.storage is not None:
            check_storage_request(store.get_collection(request.collection), request.storage)
            store = CreateWith(store, request.storage)
        self._set(job, "INGESTING", stage="ingesting", done=0, total=0)

        def progress(done: int, total: int) -> None:
            if job.cancel.is_set():
                raise IngestCancelled()
            self._set(job, "INGESTING", done=done, total=total)

        summary = run_ingest(store, embedders, request.paths, options, progress)
        return summary.as_dict()
