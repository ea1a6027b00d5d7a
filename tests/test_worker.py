"""Generative jobs end to end: real Redis, a real `pixseek worker` subprocess, a tiny diffusion model.

The collection lives in the embedded store, which one process at a time can open: it is ingested
by a subprocess before the worker starts, and this test process never opens it (the client side
of jobs only talks to Redis). Each test session uses a Redis database of its own (`redis_url`)
and a unique queue name; the worker is killed in `finally` whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import COCO, run_pixseek

pytestmark = pytest.mark.timeout(300)

FINAL = ("SUCCESS", "FAILURE", "REVOKED")
ORDER = ["QUEUED", "STARTED", "LOADING", "GENERATING", "EMBEDDING", "SEARCHING", "SUCCESS"]
# A job slow enough (a few seconds on one core) to act on while it generates.
SLOW = ["--n-images", "1", "--size", "96", "--steps", "30"]


class WorkerProcess:
    """`pixseek worker` in its own process group; output goes to a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**os.environ, **env}
        self.log = log
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0

    def start(self, timeout: float = 120) -> None:
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pixseek", "worker", "--loglevel", "info"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            if " ready." in self.output():
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        with self.log.open("rb") as handle:
            handle.seek(self._log_offset)
            return handle.read().decode("utf-8", "replace")

    def kill(self, sig: int = signal.SIGKILL, wait: float = 20) -> None:
        """Signal the whole process group (the worker and its pool children)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):  # strays of a warm shutdown, if any
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM, wait=30)


class StateRecorder:
    """Every state a job passes through, as published by Celery's Redis result backend."""

    def __init__(self, redis_url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("celery-task-meta-*")
        self.seen: dict[str, list[tuple[str, Any]]] = {}

    def _drain(self, wait: float) -> None:
        message = self.pubsub.get_message(timeout=wait)
        while message is not None:
            body = json.loads(message["data"])
            self.seen.setdefault(body["task_id"], []).append((body["status"], body["result"]))
            message = self.pubsub.get_message(timeout=0)

    def states(self, job_id: str) -> list[str]:
        return [state for state, _ in self.seen.get(job_id, [])]

    def wait_for(self, job_id: str, predicate, timeout: float = 120) -> list[tuple[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain(0.2)
            events = self.seen.get(job_id, [])
            if any(predicate(state, meta) for state, meta in events):
                return events
        raise AssertionError(f"job {job_id}: condition not met in {timeout}s; saw {events}")

    def until_final(self, job_id: str, timeout: float = 120) -> list[tuple[str, Any]]:
        return self.wait_for(job_id, lambda state, _: state in FINAL, timeout)

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


@dataclass
class Deployment:
    env: dict[str, str]
    worker: WorkerProcess
    redis_url: str
    queue: str
    data_dir: Path
    results: dict[str, Any] = field(default_factory=dict)

    def cli(self, *args: Any, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        from click.testing import CliRunner

        from pixseek.cli import main

        runner = CliRunner()
        result = runner.invoke(main, [str(a) for a in args], env={**self.env, **(env or {})})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    def client(self) -> Any:
        from pixseek.worker.client import JobClient

        from pixseek.config import load_settings

        return JobClient(load_settings(self.env))

    def redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_clip_dir: Path,
    tiny_t2i_dir: Path,
    redis_url: str,
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("jobs")
    queue = f"gpu-test-{uuid.uuid4().hex[:8]}"
    env = {
        "PIXSEEK_DATA_DIR": str(root / "data"),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
        "PIXSEEK_T2I_MODEL": str(tiny_t2i_dir),
        "PIXSEEK_T2I_SIZE": "64",
        "PIXSEEK_T2I_STEPS": "2",
        "PIXSEEK_DEVICE": "cpu",
        "PIXSEEK_BROKER_URL": redis_url,
        "PIXSEEK_JOB_QUEUE": queue,
        "PIXSEEK_JOB_TIME_LIMIT": "120",
        # Short, so a job whose worker was killed comes back within the test; longer than any
        # job here (a job that outlives it would be handed out a second time).
        "PIXSEEK_BROKER_VISIBILITY_TIMEOUT": "20",
        "OMP_NUM_THREADS": "1",  # two cores shared with the test process: no thread thrashing
        "HF_HUB_OFFLINE": "1",
    }
    ingest = run_pixseek(
        ["ingest", COCO / "train2017", "--labels", COCO / "labels.jsonl", "-c", "coco", "--json"],
        env,
    )
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["added"] == 80
    worker = WorkerProcess(env, root / "worker.log")
    try:
        worker.start()
        yield Deployment(env, worker, redis_url, queue, root / "data")
    finally:
        worker.stop()
        print(worker.output()[-3000:])


@pytest.fixture
def recorder(deployment: Deployment) -> Iterator[StateRecorder]:
    rec = StateRecorder(deployment.redis_url)
    try:
        yield rec
    finally:
        rec.close()


def submit(deployment: Deployment, *args: Any) -> str:
    code, out, err = deployment.cli("jobs", "submit", *args)
    assert code == 0, err
    job_id = out.strip()
    assert str(uuid.UUID(job_id)) == job_id
    return job_id


def wait_drained(deployment: Deployment, timeout: float = 30) -> bool:
    """True once no message waits in the queue or unacknowledged."""
    redis = deployment.redis()
    deadline = time.monotonic() + timeout
    while redis.llen(deployment.queue) or redis.hlen("unacked"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def in_order(states: list[str], expected: list[str]) -> bool:
    positions = [states.index(s) for s in expected]
    return positions == sorted(positions)


def test_submit_reports_progress_and_returns_ranked_hits(deployment, recorder, tmp_path):
    job_id = submit(deployment, "a dog on a couch", "-c", "coco", "--n-images", "2", "--seed", "7")
    events = recorder.until_final(job_id)
    states = [state for state, _ in events]
    assert states[-1] == "SUCCESS", events
    assert set(ORDER) <= set(states) and in_order(states, ORDER), states
    generating = [meta for state, meta in events if state == "GENERATING"]
    assert any(m["step"] >= 1 and m["done"] == 0 for m in generating), generating
    assert generating[-1]["done"] == generating[-1]["total"] == 2

    code, out, _ = deployment.cli("jobs", "status", job_id)
    assert code == 0 and out.startswith("done: 10 hits")
    code, out, _ = deployment.cli("jobs", "result", job_id, "--json")
    result = json.loads(out)
    assert (
        result["job_id"] == job_id and result["fusion"] == "rrf" and result["score_kind"] == "rrf"
    )
    assert result["query"]["prompt"] == "a dog on a couch" and result["deliveries"] == 1
    assert result["params"] == {
        "negative_prompt": "",
        "steps": 2,
        "guidance": 0.0,
        "width": 64,
        "height": 64,
    }
    assert [g["seed"] for g in result["generated"]] == [7, 8]
    assert result["generated_now"] == 2
    for image in result["generated"]:
        path = Path(image["path"])
        assert path.is_relative_to(deployment.data_dir / "cache") and not image["cached"]
        with Image.open(path) as picture:
            assert picture.size == (64, 64)
    hits = result["hits"]
    assert len(hits) == 10 and [h["rank"] for h in hits] == list(range(1, 11))
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(h["payload"]["root"].endswith("train2017") for h in hits)
    assert len({h["id"] for h in hits}) == 10
    assert {"generation", "embedding", "search", "total"} <= set(result["timings"])
    deployment.results["first"] = result

    code, out, _ = deployment.cli("jobs", "result", job_id)
    assert code == 0 and "seed 7:" in out and "rank" in out
    page = tmp_path / "result.html"
    code, _, _ = deployment.cli("jobs", "result", job_id, "--html", page)
    html = page.read_text()
    assert code == 0 and "What the model imagined" in html
    assert html.count("data:image/png;base64,") == 2 and "data:image/jpeg;base64," in html


def test_resubmission_takes_images_from_the_cache(deployment, recorder):
    first = deployment.results.get("first")
    if first is None:
        pytest.skip("needs the first job")
    job_id = submit(deployment, "a dog on a couch", "-c", "coco", "--n-images", "2", "--seed", "7")
    events = recorder.until_final(job_id)
    states = [state for state, _ in events]
    assert states[-1] == "SUCCESS" and "GENERATING" not in states and "LOADING" not in states
    result = deployment.client().result(job_id).to_dict()
    assert result["generated_now"] == 0 and all(g["cached"] for g in result["generated"])
    assert [g["path"] for g in result["generated"]] == [g["path"] for g in first["generated"]]
    assert [h["id"] for h in result["hits"]] == [h["id"] for h in first["hits"]]
    assert result["timings"]["generation"] < 0.5

    # One more image with the same seeds: two come from the cache, one is generated.
    job_id = submit(
        deployment, "a dog on a couch", "-c", "coco", "--n-images", "3", "--seed", "7",
        "--fusion", "text+mean",
    )  # fmt: skip
    code, out, err = deployment.cli("jobs", "result", job_id, "--wait", "--timeout", "60", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert [g["cached"] for g in result["generated"]] == [True, True, False]
    assert result["generated_now"] == 1 and result["score_kind"] == "cosine"

    # `pixseek search --generate` with a broker configured: queued, followed, printed as search.
    args = ["a dog on a couch", "-c", "coco", "--generate", "--n-images", "2", "--seed", "7"]
    code, out, err = deployment.cli("search", *args, "--json")
    assert code == 0 and "pixseek: queued job" in err, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [h["id"] for h in first["hits"]]


def test_bad_input_fails_fast_without_retries(deployment, recorder):
    code, _, err = deployment.cli("jobs", "submit", "   ", "-c", "coco")
    assert code == 2 and err.strip() == (
        "pixseek: error: the prompt is empty; describe the images to generate"
    )
    code, _, err = deployment.cli("jobs", "submit", "x" * 1001, "-c", "coco")
    assert code == 2 and "1001 characters long; the limit is 1000" in err
    code, _, err = deployment.cli("jobs", "submit", "dog", "-c", "coco", "-w", "width>=")
    assert code == 2 and err.count("\n") == 1 and "--where" in err

    started = time.monotonic()
    job_id = submit(deployment, "a red bus", "-c", "nope", "--n-images", "1")
    events = recorder.until_final(job_id, timeout=60)
    assert events[-1][0] == "FAILURE" and "RETRY" not in [s for s, _ in events]
    assert time.monotonic() - started < 30
    status = deployment.client().status(job_id)
    assert status.state == "FAILURE" and status.retries == 0
    assert status.error.startswith("collection 'nope' does not exist")
    code, out, _ = deployment.cli("jobs", "status", job_id)
    assert out.startswith("failed: collection 'nope' does not exist")
    code, _, err = deployment.cli("jobs", "result", job_id)
    assert code == 2 and f"job {job_id} failed: collection 'nope'" in err

    # A client that skips the checks (another language, an old version): the worker refuses too.
    from pixseek.worker.app import TASK_NAME

    app = deployment.client().app
    bad = {
        "empty": ({"prompt": "  ", "collection": "coco"}, "the prompt is empty"),
        "tokens": ({"prompt": "dog " * 100, "collection": "coco"}, "tokens long"),
        "field": ({"prompt": "dog", "collection": "coco", "colour": 1}, "unknown job field"),
        "type": ({"prompt": "dog", "collection": "coco", "n_images": "4"}, "whole number"),
    }
    sent = {
        name: app.send_task(TASK_NAME, kwargs={"spec": spec}).id for name, (spec, _) in bad.items()
    }
    for name, (_, reason) in bad.items():
        events = recorder.until_final(sent[name], timeout=60)
        assert events[-1][0] == "FAILURE" and "RETRY" not in [s for s, _ in events]
        assert reason in deployment.client().status(sent[name]).error, name


def test_cancel_queued_and_running_jobs(deployment, recorder):
    running = submit(deployment, "a cat on a bed", "-c", "coco", "--seed", "100", *SLOW)
    recorder.wait_for(running, lambda s, m: s == "GENERATING" and m["step"] >= 1)
    queued = submit(deployment, "a cat on a bed", "-c", "coco", "--seed", "300", *SLOW)
    assert deployment.client().status(queued).state == "QUEUED"
    code, out, _ = deployment.cli("jobs", "cancel", queued)
    assert code == 0 and out.strip() == f"job {queued}: cancelled"
    code, out, _ = deployment.cli("jobs", "cancel", running)
    assert code == 0 and ("cancel requested (generating 1/1" in out or "cancelled" in out)
    events = recorder.until_final(running, timeout=60)
    assert events[-1][0] == "REVOKED" and "SUCCESS" not in [s for s, _ in events]
    code, out, _ = deployment.cli("jobs", "status", running)
    assert out.strip() == "cancelled"
    code, _, err = deployment.cli("jobs", "result", running)
    assert code == 2 and "was cancelled" in err
    # The queued one reaches the worker after the running one stopped: it must stay cancelled.
    assert wait_drained(deployment)
    time.sleep(1.0)
    assert deployment.client().status(queued).state == "REVOKED"
    assert "GENERATING" not in recorder.states(queued)
    code, out, _ = deployment.cli("jobs", "cancel", running)
    assert out.strip() == f"job {running}: cancelled"  # cancelling twice is harmless


def test_unknown_job_and_unreachable_broker(deployment):
    code, _, err = deployment.cli("jobs", "status", str(uuid.uuid4()))
    assert code == 2 and "it was never submitted here" in err
    code, _, err = deployment.cli("jobs", "status", "not-a-job")
    assert code == 2 and "is not a job id" in err
    down = {"PIXSEEK_BROKER_URL": "redis://:hunter2@127.0.0.1:1/0"}
    started = time.monotonic()
    code, _, err = deployment.cli("jobs", "submit", "a dog", "-c", "coco", env=down)
    assert code == 2 and err.count("\n") == 1 and time.monotonic() - started < 15
    assert err.startswith("pixseek: error: cannot reach the broker at redis://:**@127.0.0.1:1/0")
    assert "hunter2" not in err
    code, _, err = deployment.cli("worker", env=down)
    assert code == 2 and "cannot reach the broker at redis://:**@127.0.0.1:1/0" in err


def pool_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def test_job_survives_sigkill_of_its_pool_process(deployment, recorder):
    """The process running the job dies (OOM killer...): the job goes straight back to the queue."""
    job_id = submit(deployment, "a boat on a lake", "-c", "coco", "--seed", "700", *SLOW)
    recorder.wait_for(job_id, lambda s, m: s == "GENERATING" and m["step"] >= 2)
    children = pool_children(deployment.worker.proc.pid)
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    events = recorder.until_final(job_id, timeout=120)
    assert events[-1][0] == "SUCCESS", events
    result = deployment.client().result(job_id).to_dict()
    assert result["deliveries"] == 2 and result["generated_now"] == 1
    assert pool_children(deployment.worker.proc.pid) != children  # a fresh pool process
    assert "WorkerLostError" in deployment.worker.output()


def test_job_survives_sigkill_of_its_worker(deployment, recorder):
    job_id = submit(deployment, "a horse on a beach", "-c", "coco", "--seed", "500", *SLOW)
    recorder.wait_for(job_id, lambda s, m: s == "GENERATING" and m["step"] >= 2)
    deployment.worker.kill(signal.SIGKILL)
    redis = deployment.redis()
    assert redis.hlen("unacked") == 1, "the job's message must wait, unacknowledged, in Redis"
    assert deployment.client().status(job_id).state == "GENERATING"  # as the dead worker left it
    deployment.worker.start()
    events = recorder.until_final(job_id, timeout=150)
    assert events[-1][0] == "SUCCESS", events
    states = [state for state, _ in events]
    assert states.count("STARTED") == 2  # delivered twice: killed once, then completed
    result = deployment.client().result(job_id).to_dict()
    assert result["deliveries"] == 2 and result["generated_now"] == 1
    assert Path(result["generated"][0]["path"]).is_file() and len(result["hits"]) == 10
    assert wait_drained(deployment)
