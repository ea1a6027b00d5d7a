"""A Redis outage while a real worker runs a job: the job still ends done, with a readable status.

The test runs a redis-server of its own (a free port, append-only file in a temp dir, so queued and
unacknowledged messages survive its restart like docker-compose's Redis), a real `pixseek worker`
subprocess and the tiny diffusion model. While the job generates, Redis is killed (SIGKILL), left
down for a few seconds and started again on the same port and files.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import COCO, free_port, run_pixseek
from tests.test_worker import WorkerProcess

pytestmark = pytest.mark.timeout(300)


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(["redis-server", *args], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def outage_setup(
    tmp_path: Path, tiny_clip_dir: Path, tiny_t2i_dir: Path
) -> Iterator[tuple[RedisServer, WorkerProcess, dict[str, str]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    redis = RedisServer(tmp_path)
    redis.start()
    images = tmp_path / "images"
    images.mkdir()
    for image in sorted((COCO / "train2017").glob("*.jpg"))[:8]:
        shutil.copy(image, images / image.name)
    env = {
        "PIXSEEK_DATA_DIR": str(tmp_path / "data"),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
        "PIXSEEK_T2I_MODEL": str(tiny_t2i_dir),
        "PIXSEEK_DEVICE": "cpu",
        "PIXSEEK_BROKER_URL": redis.url,
        "PIXSEEK_JOB_QUEUE": f"gpu-outage-{uuid.uuid4().hex[:8]}",
        "PIXSEEK_JOB_TIME_LIMIT": "200",
        "PIXSEEK_BROKER_VISIBILITY_TIMEOUT": "60",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    ingest = run_pixseek(["ingest", images, "-c", "pics", "--json"], env)
    assert ingest.returncode == 0, ingest.stderr
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.start()
        yield redis, worker, env
    finally:
        worker.stop()
        print(worker.output()[-4000:])
        redis.kill()


def test_job_survives_a_redis_restart_while_it_runs(outage_setup):
    from pixseek.worker.client import JobClient
    from pixseek.worker.spec import JobSpec

    from pixseek.config import load_settings
    from pixseek.errors import ServiceUnavailable

    redis, worker, env = outage_setup
    client = JobClient(load_settings(env))
    spec = JobSpec.from_dict(
        {"prompt": "a red bicycle", "collection": "pics", "n_images": 2, "steps": 40}
        | {"width": 96, "height": 96}
    )
    job_id = client.submit(spec)
    deadline = time.monotonic() + 120
    while client.status(job_id).state != "GENERATING":
        assert time.monotonic() < deadline, client.status(job_id)
        time.sleep(0.1)
    redis.kill()
    with pytest.raises(ServiceUnavailable):  # the client says so in one line meanwhile
        client.status(job_id)
    time.sleep(4)
    redis.start()
    final = client.wait(job_id, timeout=200, interval=0.5)
    print(json.dumps(final.as_dict(), default=str)[:2000])
    assert final.state == "SUCCESS", final.as_dict()
    result = client.result(job_id)
    assert len(result.hits) > 0 and len(result.generated) == 2
    assert "cannot record progress" in worker.output() or "Retrying" in worker.output()
    client.close()


def test_stored_failures_read_as_one_line_not_a_tuple():
    from celery.exceptions import Reject
    from pixseek.worker.app import JobFailed
    from pixseek.worker.client import readable_error
    from redis.exceptions import ConnectionError as RedisDown

    raw = Reject(RedisDown("Error 111 connecting to 127.0.0.1:6379. Connection refused."), False)
    assert "False)" in str(raw)  # what the status used to show
    line = readable_error(raw)
    assert line == (
        "the job could not be queued again while Redis was unreachable (ConnectionError: "
        "Error 111 connecting to 127.0.0.1:6379. Connection refused.)"
    )
    assert readable_error(JobFailed("gave up after 3 retries")) == "gave up after 3 retries"
    assert readable_error(RuntimeError()) == "RuntimeError"
