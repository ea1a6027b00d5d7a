"""The Celery app for generative jobs and ingest shards: Redis broker and result backend, JSON
only, one GPU queue (`pixseek.ingest_shard`, worker/ingest_tasks.py, goes to the same workers).

Configured for long GPU tasks:
- `worker_prefetch_multiplier=1` and late acks: a worker reserves only the job it is running, and
  the message is acknowledged only once the job has finished, so a job is never lost with its worker;
- `task_reject_on_worker_lost`: when the pool process running a job dies (OOM killer, segfault, kill
  -9 of the child), the message goes back to the queue instead of being acknowledged as failed. A
  per-job delivery counter (worker/tasks.py) fails a job that keeps killing workers, so it cannot loop;
- Redis visibility timeout: a message left unacknowledged this long (its whole worker died) is handed
  to another worker. It must be longer than the longest job, or a healthy long job would run twice;
  the default is the hard time limit + 10 minutes, and workers sweep for such messages every
  timeout/10 seconds (1 to 60);
- soft and hard time limits (`PIXSEEK_JOB_TIME_LIMIT`; soft = 90%, which fails the job cleanly);
- retries with exponential backoff for transient faults only (store busy or unreachable, Redis
  hiccups, CUDA out of memory), never for bad input (worker/tasks.py);
- results (and progress) kept for 7 days; the job's own id is chosen by the client.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.utils.url import maybe_sanitize_url

from pixseek.config import Settings
from pixseek.errors import ServiceUnavailable, UserError, first_line

TASK_NAME = "pixseek.generate_search"
RESULT_TTL_S = 7 * 24 * 3600
MAX_RETRIES = 4
MAX_DELIVERIES = 3  # a job whose worker died this many times is failed, not redelivered again
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class JobFailed(Exception):
    """A job that cannot succeed (bad input, out of retries); its message is the reason."""


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    return str(maybe_sanitize_url(url))


def broker_url(settings: Settings) -> str:
    if not settings.broker_url:
        raise UserError(
            "no broker configured; set PIXSEEK_BROKER_URL (e.g. redis://localhost:6379/0) to queue "
            "jobs, or run `pixseek search TEXT --generate` without it to generate in-process"
        )
    if not settings.broker_url.startswith(REDIS_SCHEMES):
        raise UserError(
            f"PIXSEEK_BROKER_URL must be a Redis URL (redis://host:6379/0), "
            f"not {safe_url(settings.broker_url)}"
        )
    return settings.broker_url


def backend_url(settings: Settings) -> str:
    url = settings.result_backend or broker_url(settings)
    if not url.startswith(REDIS_SCHEMES):
        raise UserError(
            f"PIXSEEK_RESULT_BACKEND must be a Redis URL (progress and cancel flags live there), "
            f"not {safe_url(url)}"
        )
    return url


def visibility_timeout(settings: Settings) -> int:
    return settings.broker_visibility_timeout or settings.job_time_limit + 600


def soft_time_limit(settings: Settings) -> int:
    return max(1, int(settings.job_time_limit * 0.9))


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)


def check_reachable(url: str, what: str) -> None:
    """One-line UserError naming the URL when Redis does not answer (fast: one try, 3 s)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        reason = first_line(exc)
        raise ServiceUnavailable(f"cannot reach the {what} at {safe_url(url)}: {reason}") from None
    finally:
        client.close()


def create_app(settings: Settings) -> Celery:
    """A Celery app for these settings, with the generation task registered."""
    broker, backend = broker_url(settings), backend_url(settings)
    if settings.job_time_limit < 10:
        raise UserError("PIXSEEK_JOB_TIME_LIMIT must be at least 10 seconds")
    timeout = visibility_timeout(settings)
    app = Celery("pixseek", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=settings.job_queue,
        task_routes={TASK_NAME: {"queue": settings.job_queue}},
        task_create_missing_queues=True,
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_track_started=True,
        task_time_limit=settings.job_time_limit,
        task_soft_time_limit=soft_time_limit(settings),
        broker_transport_options={
            "visibility_timeout": timeout,
            "unacked_restore_interval": max(1, min(60, timeout // 10)),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 30,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        # A job that loses the broker connection runs on and stores its result; if the message
        # is redelivered later, the task sees the stored result and returns it without rerunning.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        redis_socket_connect_timeout=5,
        redis_retry_on_timeout=True,
        result_expires=RESULT_TTL_S,
        result_extended=True,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=True,
        # Pool processes import torch & co. at start (worker/tasks.py); that can take a while.
        worker_proc_alive_timeout=120,
    )
    app.pixseek_settings = settings  # the worker's own settings; read by the task
    from pixseek.worker.ingest_tasks import register as register_ingest
    from pixseek.worker.tasks import register

    register(app)
    register_ingest(app)
    return app
