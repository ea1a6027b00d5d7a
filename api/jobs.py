"""Where the API's generative jobs run: on Celery workers, or in threads of the API process.

With `PIXSEEK_BROKER_URL` set, jobs go through worker/client.py's JobClient (the same calls as
`pixseek jobs ...`): queued in Redis, run by `pixseek worker` processes, progress and results read
back from the result backend. Generated images are files in the worker's data dir: to download
them through the API, give the API and the workers the same data dir (a shared volume).

Without a broker, jobs run in a thread pool inside the API process (`PIXSEEK_API_JOB_THREADS`,
default 1: one generation at a time, the rest wait QUEUED), through the same `run_job` the worker
calls. They report the same states and progress, and cancel the same way (checked between
denoising steps); they live in memory only, so a restart forgets them, and the last
MAX_KEPT_JOBS are kept.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pixseek.api.errors import NotFound
from pixseek.worker.records import FINISHED, JobState, JobStatus
from pixseek.worker.spec import JobSpec

from pixseek.config import Settings
from pixseek.errors import JobNotFound, PixseekError

log = logging.getLogger("pixseek.api")
MAX_KEPT_JOBS = 500


class JobBackend(Protocol):
    mode: str

    def submit(self, spec: JobSpec) -> str: ...

    def status(self, job_id: str) -> JobStatus: ...

    def cancel(self, job_id: str) -> JobStatus: ...

    def health(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def job_not_found(job_id: str) -> NotFound:
    return NotFound(f"no job {job_id}: it was never submitted here, or it expired")


# -- Celery ----------------------------------------------------------------------------------


class BrokerJobs:
    """JobClient behind the API; its errors carry their status (JobNotFound 404, Redis down 503)."""

    mode = "broker"

    def __init__(self, settings: Settings) -> None:
        from pixseek.worker.client import JobClient

        self.settings = settings
        self.client = JobClient(settings)

    def submit(self, spec: JobSpec) -> str:
        return self.client.submit(spec)

    def status(self, job_id: str) -> JobStatus:
        try:
            return self.client.status(job_id)
        except JobNotFound:
            raise job_not_found(job_id) from None

    def cancel(self, job_id: str) -> JobStatus:
        self.status(job_id)  # 404 for unknown ids before anything is written
        return self.client.cancel(job_id)

    def health(self) -> dict[str, Any]:
        from pixseek.worker.app import broker_url, safe_url

        info: dict[str, Any] = {
            "mode": self.mode,
            "broker": safe_url(broker_url(self.settings)),
            "queue": self.settings.job_queue,
        }
        try:
            self.client.check_connection()
        except PixseekError as exc:
            return {**info, "ok": False, "detail": str(exc)}
        return {**info, "ok": True}

    def close(self) -> None:
        self.client.close()


# -- in-process ------------------------------------------------------------------------------


@dataclass
class _Job:
    job_id: str
    spec: JobSpec
    state: str = JobState.QUEUED
    meta: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


class LocalJobs:
    mode = "in-process"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.threads = max(1, settings.api_job_threads)
        self._pool: ThreadPoolExecutor | None = None  # made on first submit, again after close
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, spec: JobSpec) -> str:
        job_id = str(uuid.uuid4())
        job = _Job(job_id, spec.validated())
        job.meta = {
            "stage": "queued",
            "job_id": job_id,
            "query": job.spec.to_dict(),
            "submitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "updated_at": time.time(),
        }
        with self._lock:
            self._jobs[job_id] = job
            self._forget_old()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="pixseek-job")
            self._pool.submit(self._run, job)
        return job_id

    def _forget_old(self) -> None:
        finished = [j.job_id for j in self._jobs.values() if j.state in FINISHED]
        for job_id in finished[: max(0, len(self._jobs) - MAX_KEPT_JOBS)]:
            del self._jobs[job_id]

    def _run(self, job: _Job) -> None:
        from pixseek.worker.job import JobCancelled, run_job

        if job.cancel.is_set():
            return
        self._set(job, JobState.STARTED, {"stage": "started", "job_id": job.job_id})

        def progress(state: str, meta: dict[str, Any]) -> None:
            if not job.cancel.is_set():
                self._set(job, state, meta)

        try:
            result = run_job(self.settings, job.spec, job.job_id, progress, job.cancel.is_set)
        except JobCancelled:
            self._finish(job, JobState.REVOKED)
        except PixseekError as exc:
            self._finish(job, JobState.FAILURE, error=exc.api_message)
        except Exception as exc:  # the job fails; the API keeps serving
            log.exception("job %s failed", job.job_id)
            self._finish(
                job, JobState.FAILURE, error=f"internal error ({type(exc).__name__}: {exc})"
            )
        else:
            self._finish(job, JobState.SUCCESS, result=result.to_dict())

    def _set(self, job: _Job, state: str, meta: dict[str, Any]) -> None:
        with self._lock:
            if job.state not in FINISHED:
                job.state = state
                job.meta = {**meta, "updated_at": time.time()}

    def _finish(self, job: _Job, state: str, **values: Any) -> None:
        with self._lock:
            if job.state in FINISHED:
                return
            job.state = state
            job.result = values.get("result")
            job.error = values.get("error")

    def status(self, job_id: str) -> JobStatus:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise job_not_found(job_id)
            meta = {} if job.state in FINISHED else dict(job.meta)
            if meta and job.cancel.is_set():
                meta["cancel_requested"] = True
            return JobStatus(job.job_id, job.state, meta, job.error, job.result)

    def cancel(self, job_id: str) -> JobStatus:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise job_not_found(job_id)
            if job.state not in FINISHED:
                job.cancel.set()
                if job.state == JobState.QUEUED:  # never started: cancelled at once
                    job.state = JobState.REVOKED
        return self.status(job_id)

    def health(self) -> dict[str, Any]:
        with self._lock:
            active = sum(1 for j in self._jobs.values() if j.state not in FINISHED)
        return {"mode": self.mode, "ok": True, "threads": self.threads, "active": active}

    def close(self) -> None:
        """Cancel every unfinished job (at shutdown): running ones stop within a step."""
        with self._lock:
            for job in self._jobs.values():
                if job.state not in FINISHED:
                    job.cancel.set()
                    if job.state == JobState.QUEUED:
                        job.state = JobState.REVOKED
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def job_backend(settings: Settings) -> JobBackend:
    return BrokerJobs(settings) if settings.broker_url else LocalJobs(settings)
