"""Generative search with the hosted images backend, end to end through a real `pixseek worker`.

Real Redis, a real worker subprocess, coco_mini ingested with the tiny random CLIP, and the local
server of tests/images_api_server.py standing in for the images API and the chat API (query
rewriting on). The worker reaches the server over HTTP as it would reach api.openai.com.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import COCO, run_pixseek
from tests.images_api_server import ImagesAPI
from tests.test_worker import StateRecorder, WorkerProcess

pytestmark = pytest.mark.timeout(300)


class Hosted:
    def __init__(self, env: dict[str, str], api: ImagesAPI, data_dir: Path) -> None:
        self.env, self.api, self.data_dir = env, api, data_dir

    def cli(self, *args: Any) -> tuple[int, str, str]:
        from click.testing import CliRunner

        from pixseek.cli import main

        result = CliRunner().invoke(main, [str(a) for a in args], env=self.env)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    def submit(self, *args: Any) -> str:
        code, out, err = self.cli("jobs", "submit", *args)
        assert code == 0, err
        return out.strip()

    def result(self, job_id: str) -> dict[str, Any]:
        code, out, err = self.cli("jobs", "result", job_id, "--wait", "--timeout", "90", "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture(scope="module")
def hosted(
    tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, redis_url: str
) -> Iterator[Hosted]:
    root = tmp_path_factory.mktemp("hosted")
    with ImagesAPI("sk-worker") as api:
        env = {
            "PIXSEEK_DATA_DIR": str(root / "data"),
            "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
            "PIXSEEK_T2I_MODEL": f"openai-compatible:tiny-images@{api.base_url}",
            "PIXSEEK_T2I_API_KEY_ENV": "PIXSEEK_TEST_WORKER_KEY",
            "PIXSEEK_TEST_WORKER_KEY": "sk-worker",
            "PIXSEEK_T2I_API_QUALITY": "low",
            "PIXSEEK_T2I_REWRITE_MODEL": f"rewriter@{api.base_url}",
            "PIXSEEK_T2I_SIZE": "64",
            "PIXSEEK_DEVICE": "cpu",
            "PIXSEEK_BROKER_URL": redis_url,
            "PIXSEEK_JOB_QUEUE": f"gpu-hosted-{uuid.uuid4().hex[:8]}",
            "PIXSEEK_JOB_TIME_LIMIT": "120",
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        }
        images = root / "images"  # 24 of coco_mini's pictures: enough for 10 hits, quick to embed
        images.mkdir()
        for path in sorted((COCO / "train2017").glob("*.jpg"))[:24]:
            (images / path.name).symlink_to(path)
        ingest = run_pixseek(["ingest", images, "-c", "coco", "--json"], env)
        assert ingest.returncode == 0, ingest.stderr
        worker = WorkerProcess(env, root / "worker.log")
        try:
            worker.start()
            yield Hosted(env, api, root / "data")
        finally:
            worker.stop()
            print(worker.output()[-3000:])


def test_generative_search_through_the_hosted_api(hosted):
    job_id = hosted.submit("zwei Hunde auf einem Sofa", "-c", "coco", "--n-images", "2")
    result = hosted.result(job_id)
    rewritten = "a detailed photograph of zwei Hunde auf einem Sofa, natural light"
    assert result["params"]["generation_prompt"] == rewritten
    assert result["query"]["prompt"] == "zwei Hunde auf einem Sofa"
    (chat,) = hosted.api.posts("/v1/chat/completions")
    assert chat.body["messages"][-1]["content"] == "zwei Hunde auf einem Sofa"
    (request,) = hosted.api.posts()
    assert request.headers["Authorization"] == "Bearer sk-worker"
    assert request.body["prompt"] == rewritten and request.body["n"] == 2
    assert request.body["size"] == "64x64" and request.body["quality"] == "low"
    assert result["generated_now"] == 2 and result["deliveries"] == 1
    for image in result["generated"]:
        with Image.open(image["path"]) as picture:
            assert picture.size == (64, 64)
        assert Path(image["path"]).is_relative_to(hosted.data_dir / "cache" / "generated")
    hits = result["hits"]
    assert len(hits) == 10 and [h["rank"] for h in hits] == list(range(1, 11))
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    # Same query again: the rewrite and both images come from the caches, no request is made.
    again = hosted.result(
        hosted.submit("zwei Hunde auf einem Sofa", "-c", "coco", "--n-images", "2")
    )
    assert again["generated_now"] == 0 and all(g["cached"] for g in again["generated"])
    assert [h["id"] for h in again["hits"]] == [h["id"] for h in hits]
    assert len(hosted.api.posts()) == 1 and len(hosted.api.posts("/v1/chat/completions")) == 1


def test_a_refused_prompt_fails_the_job_once_with_the_api_message(hosted, redis_url):
    recorder = StateRecorder(redis_url)
    try:
        before = len(hosted.api.posts())
        job_id = hosted.submit("something forbidden", "-c", "coco", "--n-images", "1")
        events = recorder.until_final(job_id, timeout=90)
    finally:
        recorder.close()
    assert events[-1][0] == "FAILURE" and "RETRY" not in [s for s, _ in events]
    assert len(hosted.api.posts()) == before + 1
    code, out, _ = hosted.cli("jobs", "status", job_id)
    assert "moderation_blocked: Your request was rejected" in out
    assert out.count("\n") == 1
