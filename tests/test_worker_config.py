"""The Celery configuration for long GPU jobs, the retry policy, and how job states read."""

from __future__ import annotations

import time

import pytest
from pixseek.worker.app import TASK_NAME, create_app, visibility_timeout
from pixseek.worker.client import JobStatus, check_job_id
from pixseek.worker.tasks import backoff_seconds, is_transient

from pixseek.config import load_settings
from pixseek.errors import ServiceUnavailable, StoreBusy, UserError

BROKER = {"PIXSEEK_BROKER_URL": "redis://127.0.0.1:6379/0"}


def test_celery_settings_fit_long_gpu_jobs():
    settings = load_settings({**BROKER, "PIXSEEK_JOB_TIME_LIMIT": "600"})
    conf = create_app(settings).conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
    assert conf.task_routes == {TASK_NAME: {"queue": "gpu"}}
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.task_track_started
    assert (conf.task_time_limit, conf.task_soft_time_limit) == (600, 540)
    transport = conf.broker_transport_options
    assert transport["visibility_timeout"] == 1200 > conf.task_time_limit
    assert transport["unacked_restore_interval"] == 60
    assert conf.result_backend == BROKER["PIXSEEK_BROKER_URL"]
    app = create_app(load_settings({**BROKER, "PIXSEEK_RESULT_BACKEND": "redis://h:1/2"}))
    assert app.conf.result_backend == "redis://h:1/2" and TASK_NAME in app.tasks
    other = create_app(load_settings({**BROKER, "PIXSEEK_JOB_QUEUE": "gpu-b"}))
    assert other.tasks[TASK_NAME].app is other and app.tasks[TASK_NAME].app is app  # not shared
    assert other.conf.task_routes == {TASK_NAME: {"queue": "gpu-b"}}


def test_visibility_timeout_can_be_set():
    assert visibility_timeout(load_settings({"PIXSEEK_BROKER_VISIBILITY_TIMEOUT": "90"})) == 90
    assert visibility_timeout(load_settings({})) == 1800 + 600


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no broker configured; set PIXSEEK_BROKER_URL"),
        ({"PIXSEEK_BROKER_URL": "amqp://guest@rabbit//"}, "must be a Redis URL"),
        ({**BROKER, "PIXSEEK_RESULT_BACKEND": "db+sqlite:///r.db"}, "RESULT_BACKEND must be"),
        ({**BROKER, "PIXSEEK_JOB_TIME_LIMIT": "5"}, "at least 10 seconds"),
    ],
)
def test_misconfiguration_is_a_one_line_error(env, message):
    with pytest.raises(UserError, match=message):
        create_app(load_settings(env))


def test_only_transient_faults_are_retried():
    import redis

    assert is_transient(StoreBusy("collection 'x' is open in another pixseek process"))
    assert is_transient(ServiceUnavailable("cannot reach Qdrant at http://q:6333: refused"))
    # The type decides, not the wording: a plain UserError is the user's to fix, never retried.
    assert not is_transient(UserError("cannot reach Qdrant at http://q:6333: refused"))
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert is_transient(redis.exceptions.ConnectionError("down"))
    assert not is_transient(UserError("collection 'x' does not exist"))
    assert not is_transient(UserError("the prompt is empty"))
    assert not is_transient(ValueError("bug"))
    settings = load_settings({"PIXSEEK_BROKER_VISIBILITY_TIMEOUT": "100"})
    from pixseek.store.server import ServerStore

    with pytest.raises(ServiceUnavailable, match="cannot reach Qdrant at http://127.0.0.1:1"):
        ServerStore("http://127.0.0.1:1").list_collections()
    delays = [backoff_seconds(n, settings) for n in range(6)]
    assert 4 <= delays[0] <= 6 and 8 <= delays[1] <= 12
    assert max(delays) <= 50 * 1.2  # capped at half the visibility timeout


def test_job_states_read_as_one_line():
    job = "6b3c1f0e-8f3a-4c2e-9d51-7a0c2b9e4f11"
    generating = {"done": 1, "total": 4, "batch": 2, "step": 3, "steps": 20}
    assert JobStatus(job, "GENERATING", generating).describe() == "generating 2-3/4 (step 3/20)"
    one = {**generating, "batch": 1}
    assert JobStatus(job, "GENERATING", one).describe() == "generating 2/4 (step 3/20)"
    assert JobStatus(job, "QUEUED", {}).describe() == "queued"
    assert JobStatus(job, "LOADING", {"model": "m"}).describe() == "loading m"
    assert JobStatus(job, "FAILURE", error="bad").describe() == "failed: bad"
    assert JobStatus(job, "REVOKED").describe() == "cancelled"
    done = JobStatus(job, "SUCCESS", result={"hits": [{}] * 3, "timings": {"total": 2.5}})
    assert done.describe() == "done: 3 hits in 2.5s" and done.finished
    stale = {"worker": "w1", "updated_at": time.time() - 600}
    assert "no news from w1 for 6" in JobStatus(job, "EMBEDDING", stale).describe()
    assert check_job_id(job.upper()) == job
    with pytest.raises(UserError, match="is not a job id"):
        check_job_id("42")
