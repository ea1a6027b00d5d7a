"""HTTP API /jobs: in-process jobs (no broker) and Celery jobs on real Redis, tiny models."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pixseek.errors import UserError
from tests import test_api
from tests.test_api import error, make_client, ok

api_env = test_api.api_env  # coco_mini ingested once per session (shared with test_api.py)
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def job_settings(tiny_t2i_dir: Path) -> dict[str, Any]:
    # text_backend torch: the background ONNX export of the text tower (torch.export, fake
    # tensors) raced a job's torch text encode in the same process ("fake_mode.in_kernel_invocation
    # must be False"); this module is about jobs, not the text path.
    return {
        "t2i_model": str(tiny_t2i_dir),
        "t2i_steps": 2,
        "t2i_size": 32,
        "device": "cpu",
        "text_backend": "torch",
    }


@pytest.fixture(scope="module")
def client(api_env: dict[str, str], job_settings: dict[str, Any]) -> Iterator[Any]:
    with make_client(api_env, **job_settings) as test_client:
        yield test_client


def wait(client: Any, job_id: str, timeout: float = 120) -> tuple[dict[str, Any], list[str]]:
    """Poll GET /jobs/{id} until it finishes; returns the last status and the states seen."""
    states: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ok(client.get(f"/jobs/{job_id}"))
        if not states or states[-1] != status["state"]:
            states.append(status["state"])
        if status["finished"]:
            return status, states
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s; states {states}")


def submit(client: Any, **body: Any) -> dict[str, Any]:
    response = client.post("/jobs", json={"collection": "coco", **body})
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['job_id']}"
    return job


def check_result(client: Any, job_id: str, n_images: int, limit: int) -> dict[str, Any]:
    result = ok(client.get(f"/jobs/{job_id}/result"))
    assert result["job_id"] == job_id and result["state"] == "SUCCESS"
    assert len(result["generated"]) == n_images
    for index, record in enumerate(result["generated"]):
        assert record["url"] == f"/jobs/{job_id}/images/{index}"
        image = client.get(record["url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(image.content)) as picture:
            assert picture.size == (32, 32)
    assert "no 9" in error(client.get(f"/jobs/{job_id}/images/9"), 404)
    assert len(result["hits"]) == limit
    # No absolute server path: generated images by URL only, the model directory by its name.
    assert all("path" not in record for record in result["generated"])
    assert not result["model"].startswith("/") and "tiny-t2i" in result["model"]
    assert all(not hit["payload"]["root"].startswith("/") for hit in result["hits"])
    for hit in result["hits"]:
        assert hit["thumbnail_url"] == f"/images/coco/{hit['id']}/thumbnail"
        assert client.get(hit["thumbnail_url"]).status_code == 200
    return result


def test_in_process_job_end_to_end(client):
    job = submit(client, prompt="a red bicycle", n_images=2, limit=5, where=["width>=300"])
    assert job["state"] in ("QUEUED", "STARTED", "LOADING", "GENERATING") and not job["finished"]
    status, states = wait(client, job["job_id"])
    assert status["state"] == "SUCCESS" and status["status"].startswith("done: 5 hits")
    assert status["result_url"] == f"/jobs/{job['job_id']}/result"
    assert states[-1] == "SUCCESS" and set(states) <= {
        "QUEUED", "STARTED", "LOADING", "GENERATING", "EMBEDDING", "SEARCHING", "SUCCESS",
    }  # fmt: skip
    result = check_result(client, job["job_id"], 2, 5)
    assert all(h["payload"]["width"] >= 300 for h in result["hits"])
    assert result["query"]["prompt"] == "a red bicycle" and result["fusion"] == "rrf"
    cancelled = ok(client.delete(f"/jobs/{job['job_id']}"))  # finished: stays finished
    assert cancelled["state"] == "SUCCESS"
    text_only = submit(client, prompt="a dog", n_images=0, fusion="text", limit=3, ensemble=False)
    assert wait(client, text_only["job_id"])[0]["state"] == "SUCCESS"
    plain = ok(client.get(f"/jobs/{text_only['job_id']}/result"))
    assert plain["generated"] == [] and plain["query"]["ensemble"] is False


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"prompt": "   "}, 422, "the prompt is empty"),
        ({"prompt": ""}, 422, "prompt: String should have at least 1 character"),
        ({"prompt": "x", "collection": "nope"}, 404, "collection 'nope' does not exist"),
        ({"prompt": "x", "collection": "../x"}, 422, "invalid collection name"),
        ({"prompt": "x", "where": ["width>>1"]}, 422, "where 'width>>1': expected a number"),
        ({"prompt": "x", "filter": {"must": 3}}, 422, "not a valid Qdrant filter"),
        ({"prompt": "x", "fusion": "max"}, 422, "fusion: Input should be"),
        ({"prompt": "x", "width": 100}, 422, "width: Input should be a multiple of 8"),
        ({"prompt": "x", "n_images": 0}, 422, "n_images must be between 1 and 16"),
        ({"prompt": "x", "seeds": 3}, 422, "seeds: Extra inputs are not permitted"),
    ],
)
def test_job_input_errors(client, body, status, expected):
    response = client.post("/jobs", json={"collection": "coco", **body})
    assert expected in error(response, status)


def test_unknown_and_malformed_job_ids(client):
    unknown = str(uuid.uuid4())
    for method, suffix in [("GET", ""), ("GET", "/result"), ("GET", "/images/0"), ("DELETE", "")]:
        assert "no job" in error(client.request(method, f"/jobs/{unknown}{suffix}"), 404)
        assert "not a job id" in error(client.request(method, f"/jobs/nope{suffix}"), 422)
    assert error(client.get(f"/jobs/{unknown}/images/-1"), 422)


def _fake_run_job(calls: list[str]):
    """A job that 'generates' until it is cancelled: cancel and queueing without a GPU."""
    from pixseek.worker.job import JobCancelled

    def run_job(settings, spec, job_id, progress, cancelled, deliveries=1):
        calls.append(spec.prompt)
        if spec.prompt == "fail":
            raise UserError("the model refused")
        if spec.prompt == "crash":
            raise RuntimeError("segfault-ish")
        for step in range(100_000):
            progress(
                "GENERATING", {"done": 0, "total": 1, "batch": 1, "step": step, "steps": 10**5}
            )
            if cancelled():
                raise JobCancelled(job_id)
            time.sleep(0.01)
        raise AssertionError("never cancelled")

    return run_job


def test_cancel_queued_and_running_jobs_and_failures(client, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr("pixseek.worker.job.run_job", _fake_run_job(calls))
    running = submit(client, prompt="running")
    queued = submit(client, prompt="queued")  # one job thread: this one waits
    deadline = time.monotonic() + 30
    while ok(client.get(f"/jobs/{running['job_id']}"))["state"] != "GENERATING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    progress = ok(client.get(f"/jobs/{running['job_id']}"))
    assert progress["status"].startswith("generating 1/1 (step ")
    assert ok(client.get(f"/jobs/{queued['job_id']}"))["state"] == "QUEUED"
    assert ok(client.delete(f"/jobs/{queued['job_id']}"))["state"] == "REVOKED"  # at once
    client.delete(f"/jobs/{running['job_id']}")
    status, _ = wait(client, running["job_id"], 30)
    assert status["state"] == "REVOKED" and status["status"] == "cancelled"
    message = error(client.get(f"/jobs/{running['job_id']}/result"), 409)
    assert "was cancelled" in message
    assert "was cancelled" in error(client.get(f"/jobs/{running['job_id']}/images/0"), 409)
    failed = submit(client, prompt="fail")
    status, _ = wait(client, failed["job_id"], 30)
    assert status["state"] == "FAILURE" and status["error"] == "the model refused"
    assert "failed: the model refused" in error(client.get(f"/jobs/{failed['job_id']}/result"), 409)
    crashed = submit(client, prompt="crash")
    status, _ = wait(client, crashed["job_id"], 30)
    assert status["error"] == "internal error (RuntimeError: segfault-ish)"
    assert calls == ["running", "fail", "crash"]  # the cancelled queued job never ran
    assert ok(client.get("/health"))["jobs"]["active"] == 0


def test_unfinished_job_has_no_result_yet(client, monkeypatch):
    monkeypatch.setattr("pixseek.worker.job.run_job", _fake_run_job([]))
    job = submit(client, prompt="slow")
    assert "is not finished" in error(client.get(f"/jobs/{job['job_id']}/result"), 409)
    client.delete(f"/jobs/{job['job_id']}")
    assert wait(client, job["job_id"], 30)[0]["state"] == "REVOKED"


# -- Celery on real Redis --------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker_client(
    api_env: dict[str, str], job_settings: dict[str, Any], redis_url: str
) -> Iterator[Any]:
    queue = f"api-test-{uuid.uuid4().hex[:8]}"
    settings = {**job_settings, "broker_url": redis_url, "job_queue": queue, "job_time_limit": 120}
    with make_client(api_env, **settings) as test_client:
        yield test_client


def test_broker_jobs_queue_cancel_and_run_on_a_worker(broker_client):
    """Jobs through Redis. The worker runs in a thread of this process: the embedded store can
    be open in one process only (a deployment with separate workers uses a Qdrant server)."""
    from celery.contrib.testing.worker import start_worker

    health = ok(broker_client.get("/health"))
    assert health["jobs"]["mode"] == "broker" and health["jobs"]["ok"] is True
    assert "Qdrant server" in health["jobs"]["warning"]
    queued = submit(broker_client, prompt="a dog", n_images=1, limit=3)
    assert ok(broker_client.get(f"/jobs/{queued['job_id']}"))["state"] == "QUEUED"
    assert ok(broker_client.delete(f"/jobs/{queued['job_id']}"))["state"] == "REVOKED"
    assert "was cancelled" in error(broker_client.get(f"/jobs/{queued['job_id']}/result"), 409)
    assert "no job" in error(broker_client.get(f"/jobs/{uuid.uuid4()}"), 404)
    jobs = broker_client.app.state.pixseek.jobs  # the API's JobClient: its Celery app
    queue = jobs.settings.job_queue
    with start_worker(jobs.client.app, pool="solo", perform_ping_check=False, queues=[queue]):
        job = submit(broker_client, prompt="a red bicycle", n_images=2, limit=4)
        status, states = wait(broker_client, job["job_id"])
    assert status["state"] == "SUCCESS", status
    assert states[-1] == "SUCCESS"
    check_result(broker_client, job["job_id"], 2, 4)


def test_unreachable_broker_is_503(api_env):
    with make_client(api_env, broker_url="redis://127.0.0.1:1/0") as down:
        message = error(down.post("/jobs", json={"prompt": "x", "collection": "coco"}), 503)
        assert message.startswith("cannot reach the broker at redis://127.0.0.1:1/0")
        health = down.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert health.json()["jobs"]["ok"] is False
        assert error(down.get(f"/jobs/{uuid.uuid4()}"), 503).startswith("cannot reach")
