"""The Celery task behind `pixseek jobs submit`: run one generative search on a GPU worker.

Failure policy:
- bad input (empty or overlong prompt, unknown collection, unknown model, bad filter...) fails the
  job at once with the one-line reason, and is never retried;
- transient faults (the embedded store held by another process, Qdrant or Redis unreachable, CUDA
  out of memory) are retried with exponential backoff and jitter, up to MAX_RETRIES times;
- a job whose worker dies is redelivered (late acks + reject on worker lost + visibility timeout)
  and runs again from the start (its finished images are cached); after MAX_DELIVERIES deliveries
  it is failed with a reason instead of looping;
- a message delivered again after its job already succeeded returns the stored result.

Cancelling is cooperative: `pixseek jobs cancel` sets a flag in Redis, which the job checks before
every stage and after every denoising step; the job then records REVOKED and stops. The flag also
stops a job that is still queued, whichever worker picks it up (Celery's own revoke list is kept
in worker memory only).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from celery import Celery, Task, states
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.signals import worker_process_init
from pixseek.worker.app import (
    MAX_DELIVERIES,
    MAX_RETRIES,
    RESULT_TTL_S,
    TASK_NAME,
    JobFailed,
    backend_url,
    redis_client,
    soft_time_limit,
    visibility_timeout,
)

from pixseek.config import Settings
from pixseek.errors import PixseekError, ServiceUnavailable, first_line

log = logging.getLogger(__name__)


class JobControl:
    """Per-job keys in the result backend's Redis: the cancel flag and the delivery counter."""

    def __init__(self, client: Any, job_id: str) -> None:
        self.client = client
        self.job_id = job_id
        self.prefix = f"pixseek:job:{job_id}"

    def request_cancel(self) -> None:
        self.client.set(f"{self.prefix}:cancel", "1", ex=RESULT_TTL_S)

    def cancel_requested(self) -> bool:
        try:
            return bool(self.client.exists(f"{self.prefix}:cancel"))
        except Exception as exc:  # a Redis hiccup must not kill a running generation
            log.warning("cannot read the cancel flag of job %s: %s", self.job_id, exc)
            return False

    def count_delivery(self, retries: int) -> int:
        key = f"{self.prefix}:deliveries:{retries}"
        with self.client.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, RESULT_TTL_S)
            count, _ = pipe.execute()
        return int(count)


def is_transient(exc: BaseException) -> bool:
    """Faults worth a retry: the problem is elsewhere and likely to pass."""
    import redis

    if isinstance(exc, ServiceUnavailable):  # Qdrant or Redis down, store held elsewhere
        return True
    if isinstance(exc, PixseekError):  # bad input or a misconfigured server: retrying won't help
        return False
    if isinstance(exc, ConnectionError | TimeoutError | redis.exceptions.ConnectionError):
        return True
    try:
        import torch

        return isinstance(exc, torch.cuda.OutOfMemoryError)
    except (ImportError, AttributeError):
        return False


_clients: dict[tuple[int, str], Any] = {}


def control_client(settings: Settings) -> Any:
    """One Redis client per process for the per-job keys (connections are pooled)."""
    import os

    key = (os.getpid(), backend_url(settings))
    if key not in _clients:
        _clients[key] = redis_client(key[1])
    return _clients[key]


def backoff_seconds(retries: int, settings: Settings) -> float:
    """5, 10, 20, 40 s... with jitter, and well inside the visibility timeout."""
    ceiling = min(300.0, visibility_timeout(settings) / 2)
    delay = min(ceiling, 5.0 * 2**retries)
    return delay * random.uniform(0.8, 1.2)


def _cancelled(task: Task, job_id: str) -> Ignore:
    task.backend.mark_as_revoked(job_id, reason="cancelled", request=task.request)
    log.info("job %s cancelled", job_id)
    return Ignore()


def execute(task: Task, settings: Settings, raw_spec: Any) -> dict[str, Any]:
    from pixseek.worker.job import JobCancelled, run_job
    from pixseek.worker.spec import JobSpec

    job_id = task.request.id
    done = task.backend.get_task_meta(job_id)
    if done.get("status") == states.SUCCESS:
        log.info("job %s was already done; returning its stored result", job_id)
        return done["result"]
    control = JobControl(control_client(settings), job_id)
    if control.cancel_requested():
        raise _cancelled(task, job_id)
    deliveries = _when_reachable(lambda: control.count_delivery(task.request.retries), settings)
    if deliveries > MAX_DELIVERIES:
        raise JobFailed(
            f"the worker running this job died {deliveries - 1} times (killed, or out of memory?); "
            "giving up, see the worker logs"
        )
    hostname = task.request.hostname

    def progress(state: str, meta: dict[str, Any]) -> None:
        meta = {**meta, "worker": hostname, "deliveries": deliveries, "updated_at": time.time()}
        try:
            task.update_state(task_id=job_id, state=state, meta=meta)
        except Exception as exc:  # progress is news, not the job: Redis down must not stop it
            if not is_transient(exc):
                raise
            log.warning("job %s: cannot record progress (%s); the job goes on", job_id, exc)

    try:
        spec = JobSpec.from_dict(raw_spec)
        result = run_job(
            settings, spec, job_id, progress, control.cancel_requested, deliveries
        ).to_dict()
    except JobCancelled:
        _await_redis(control, settings)
        raise _cancelled(task, job_id) from None
    except SoftTimeLimitExceeded:
        _await_redis(control, settings)
        raise JobFailed(
            f"the job ran past its time limit of {soft_time_limit(settings)} s "
            "(PIXSEEK_JOB_TIME_LIMIT); use fewer images, steps or pixels"
        ) from None
    except Exception as exc:
        if is_transient(exc):
            _release_gpu_memory()
            if task.request.retries >= MAX_RETRIES:
                _await_redis(control, settings)
                raise JobFailed(f"gave up after {MAX_RETRIES} retries: {exc}") from None
            countdown = backoff_seconds(task.request.retries, settings)
            log.warning("job %s: transient fault, retrying in %.0f s: %s", job_id, countdown, exc)
            raise _retry(task, settings, exc, countdown) from None
        _await_redis(control, settings)
        if isinstance(exc, PixseekError):
            raise JobFailed(exc.api_message) from None
        raise
    # Celery stores the result right after this returns: with Redis down, that store would fail
    # and the finished job read as running until its message is redelivered.
    _await_redis(control, settings)
    return result


def _await_redis(control: JobControl, settings: Settings) -> None:
    """Wait (up to outage_wait_s) until the result backend's Redis answers again."""
    try:
        _when_reachable(control.client.ping, settings)
    except Exception as exc:  # still down: the message stays unacked and is redelivered
        log.warning("job %s: Redis is still unreachable (%s)", control.job_id, exc)


def outage_wait_s(settings: Settings) -> float:
    """How long a job waits for Redis to come back before it gives up (well inside the
    visibility timeout, after which Redis would hand the job to another worker anyway)."""
    return min(300.0, visibility_timeout(settings) / 2)


def _when_reachable(call: Any, settings: Settings) -> Any:
    """`call()`, retried while Redis does not answer, for up to outage_wait_s."""
    deadline = time.monotonic() + outage_wait_s(settings)
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("Redis does not answer (%s); trying again in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _retry(task: Task, settings: Settings, exc: BaseException, countdown: float) -> Exception:
    """The Retry to raise. Queuing the retry needs the broker: while Redis is down, Celery's
    `retry` raises Reject (the message would be dropped, the state a raw tuple), so wait for
    Redis to come back, then queue it; fail with a readable reason if it never does."""
    from celery.exceptions import Reject

    waited = time.monotonic()
    try:
        return _when_reachable(lambda: _queue_retry(task, exc, countdown, Reject), settings)
    except _BrokerDown as down:
        seconds = time.monotonic() - waited
        return JobFailed(
            f"the broker stayed unreachable for {seconds:.0f} s, so the retry after "
            f"'{first_line(exc)}' could not be queued ({first_line(down.cause)}); "
            "submit the job again once Redis is back"
        )


class _BrokerDown(ConnectionError):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(first_line(cause))
        self.cause = cause


def _queue_retry(task: Task, exc: BaseException, countdown: float, reject: type) -> Exception:
    try:
        return task.retry(exc=exc, countdown=countdown, max_retries=MAX_RETRIES, throw=False)
    except reject as rejected:
        cause = rejected.reason if isinstance(rejected.reason, BaseException) else rejected
        raise _BrokerDown(cause) from None


def _release_gpu_memory() -> None:
    """After a CUDA out-of-memory error, give cached blocks back before the retry."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@worker_process_init.connect(weak=False)
def _import_early(**_: Any) -> None:
    """Import the heavy libraries when a pool process starts, not in the first job.

    Imports only: no model is loaded and CUDA is not touched until a job needs them, in this
    (already forked) process.
    """
    import diffusers  # noqa: F401
    import open_clip  # noqa: F401
    import torch  # noqa: F401

    import pixseek.store  # noqa: F401


def register(app: Celery) -> None:
    """Register the task on `app` only (not shared with other apps in the process)."""

    @app.task(
        name=TASK_NAME,
        bind=True,
        shared=False,
        acks_late=True,
        reject_on_worker_lost=True,
        track_started=True,
        max_retries=MAX_RETRIES,
        throws=(JobFailed,),
    )
    def generate_search(self: Task, spec: dict[str, Any]) -> dict[str, Any]:
        return execute(self, self.app.pixseek_settings, spec)
