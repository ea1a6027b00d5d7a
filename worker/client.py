"""Submit, watch, fetch and cancel generative jobs: what the CLI (and an HTTP API) call.

A job's life in the result backend: QUEUED (written by `submit` before the message is sent, so an
id that was never submitted reads as unknown rather than "pending"), STARTED, LOADING, GENERATING,
EMBEDDING, SEARCHING, then SUCCESS, FAILURE or REVOKED (cancelled); RETRY while it waits to be
retried after a transient fault.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pixseek.worker.app import (
    RESULT_TTL_S,
    TASK_NAME,
    backend_url,
    broker_url,
    check_reachable,
    create_app,
    redis_client,
    safe_url,
)
from pixseek.worker.records import JobResult, JobState, JobStatus
from pixseek.worker.spec import JobSpec
from pixseek.worker.tasks import JobControl

from pixseek.config import Settings
from pixseek.errors import Conflict, JobNotFound, ServiceUnavailable, UserError, first_line


def readable_error(exc: BaseException) -> str:
    """One line for a stored failure: the job's own reason (JobFailed), or the exception's type
    and first message, never a tuple of arguments such as `("OperationalError(...)", False)`."""
    name = type(exc).__name__
    texts = [
        f"{type(arg).__name__}: {first_line(arg)}" if isinstance(arg, BaseException) else arg
        for arg in exc.args
        if isinstance(arg, BaseException) or (isinstance(arg, str) and arg.strip())
    ]
    text = first_line(texts[0]) if texts else ""
    wrapped = re.fullmatch(r"(\w+)\((['\"])(.*)\2\)", text)  # the repr of an exception
    if wrapped:
        text = f"{wrapped.group(1)}: {wrapped.group(3)}"
    if name == "JobFailed":
        return text or "the job failed"
    if name == "Reject":
        return f"the job could not be queued again while Redis was unreachable ({text})"
    return f"{name}: {text}" if text else name


def check_job_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(job_id.strip()))
    except ValueError:
        raise UserError(
            f"{job_id!r} is not a job id; `pixseek jobs submit` prints one (a UUID)"
        ) from None


class JobClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._redis: Any = None

    def _control(self, job_id: str) -> JobControl:
        if self._redis is None:
            self._redis = redis_client(backend_url(self.settings))
        return JobControl(self._redis, job_id)

    def check_connection(self) -> None:
        broker, backend = broker_url(self.settings), backend_url(self.settings)
        check_reachable(broker, "broker")
        if backend != broker:
            check_reachable(backend, "result backend")

    def submit(self, spec: JobSpec, job_id: str | None = None) -> str:
        """Queue the job; returns its id. The spec is checked here and again on the worker."""
        spec = spec.validated()
        self.check_connection()
        job_id = check_job_id(job_id) if job_id else str(uuid.uuid4())
        queued = {
            "stage": "queued",
            "job_id": job_id,
            "query": spec.to_dict(),
            "submitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "updated_at": time.time(),
        }
        self.app.backend.store_result(job_id, queued, JobState.QUEUED)
        try:
            self.app.send_task(
                TASK_NAME, kwargs={"spec": spec.to_dict()}, task_id=job_id, retry=False
            )
        except Exception as exc:  # kombu raises OperationalError and friends
            self.app.backend.forget(job_id)
            raise ServiceUnavailable(
                f"cannot queue the job on the broker at {safe_url(broker_url(self.settings))}: {exc}"
            ) from None
        return job_id

    def status(self, job_id: str) -> JobStatus:
        job_id = check_job_id(job_id)
        try:
            meta = self.app.backend.get_task_meta(job_id, cache=False)
        except Exception as exc:
            url = safe_url(backend_url(self.settings))
            raise ServiceUnavailable(f"cannot reach the result backend at {url}: {exc}") from None
        state = meta.get("status", "PENDING")
        if state == "PENDING":
            hours = RESULT_TTL_S // 3600
            raise JobNotFound(
                f"no job {job_id}: it was never submitted here, or its result expired ({hours} h)"
            )
        result = meta.get("result")
        status = JobStatus(job_id, state, retries=int(meta.get("retries") or 0))
        if state == JobState.SUCCESS:
            status.result = result
        elif isinstance(result, BaseException):
            status.error = readable_error(result)
        elif isinstance(result, dict):
            status.meta = result
        return status

    def result(self, job_id: str) -> JobResult:
        status = self.status(job_id)
        if status.state == JobState.SUCCESS and status.result is not None:
            return JobResult.from_dict(status.result)
        if status.state == JobState.FAILURE:
            raise Conflict(f"job {status.job_id} failed: {status.error}")
        if status.state == JobState.REVOKED:
            raise Conflict(f"job {status.job_id} was cancelled; it has no result")
        raise Conflict(
            f"job {status.job_id} is not finished ({status.describe()}); "
            "use `pixseek jobs result ID --wait` to wait for it"
        )

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_update: Callable[[JobStatus], None] | None = None,
        interval: float = 0.25,
    ) -> JobStatus:
        """Poll until the job finishes; `on_update` sees every change of state or progress."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[str, Any] | None = None
        while True:
            status = self.status(job_id)
            seen = (status.state, status.meta.get("done"), status.meta.get("step"))
            if on_update is not None and seen != last:
                on_update(status)
            last = seen
            if status.finished:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise UserError(
                    f"job {status.job_id} did not finish within {timeout:g}s ({status.describe()}); "
                    "it keeps running: check it later with `pixseek jobs status ID`"
                )
            time.sleep(interval)

    def cancel(self, job_id: str) -> JobStatus:
        """Ask the job to stop; a queued job is cancelled at once, a running one within a step."""
        status = self.status(job_id)
        if status.finished:
            return status
        self._control(status.job_id).request_cancel()
        self.app.control.revoke(status.job_id)  # live workers drop it if it is still queued
        if status.state == JobState.QUEUED:
            self.app.backend.mark_as_revoked(status.job_id, reason="cancelled before it started")
        return self.status(status.job_id)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
