"""pixseek serve as the running backend: it owns the embedded store, local commands delegate to
it, remote callers ingest through POST /ingest (allowed roots) or an uploaded archive.

Real processes: a `pixseek serve` subprocess on a fresh data dir, `pixseek` CLI subprocesses,
HTTP over a real socket.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import COCO, free_port, json_lines, run_pixseek, serve_process

COCO_IMAGES = 239


def _wait_job(client: httpx.Client, job_url: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(job_url).json()
        if job["finished"]:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_url} did not finish in {timeout}s")


@pytest.fixture
def served(tmp_path: Path, pixseek_env: dict) -> Iterator[tuple[str, dict, Path]]:
    """A running `pixseek serve` on a fresh data dir; yields (url, env, allowed root)."""
    root = tmp_path / "allowed"
    root.mkdir()
    env = {
        **pixseek_env,
        "PIXSEEK_INGEST_ROOTS": str(root),
        "PIXSEEK_INGEST_MAX_UPLOAD_BYTES": str(4 * 1024 * 1024),
        # The first text query would otherwise export the text tower to ONNX (minutes on a
        # loaded machine); this test is about the store, not the text path.
        "PIXSEEK_TEXT_BACKEND": "torch",
    }
    data_dir = Path(env["PIXSEEK_DATA_DIR"])
    with serve_process({**os.environ, **env}, tmp_path / "serve.log", "--log-level", "warning") as (
        url,
        _,
    ):
        assert (data_dir / "server.json").is_file()
        assert (data_dir / "server.secret").stat().st_mode & 0o777 == 0o600
        yield url, env, root
    # SIGTERM: the server removes its address and secret on the way out.
    assert not (data_dir / "server.json").exists() and not (data_dir / "server.secret").exists()


def test_second_serve_on_the_same_data_dir_is_refused(served):
    url, env, _ = served
    done = run_pixseek(["serve", "--port", str(free_port())], env)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert (
        "already running" in line
        and str(json.loads(Path(env["PIXSEEK_DATA_DIR"], "server.json").read_text())["pid"]) in line
    )


def test_cli_ingest_through_the_server_while_searches_and_health_stay_200(served):
    url, env, _ = served
    ingest = subprocess.Popen(
        [sys.executable, "-m", "pixseek", "ingest", str(COCO), "-c", "coco", "--json"]
        + ["--labels", str(COCO / "labels.jsonl")],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    statuses: list[int] = []
    health: list[int] = []
    counts: list[int] = []
    with httpx.Client(base_url=url, timeout=120) as client:
        while ingest.poll() is None:
            found = client.get("/collections/coco")
            if found.status_code == 200:
                counts.append(found.json()["points"])
                body = {"collection": "coco", "q": "a dog", "limit": 5}
                statuses.append(client.post("/search", json=body).status_code)
            else:
                assert found.status_code == 404  # not created yet: never 503
            health.append(client.get("/health").status_code)
            time.sleep(0.2)
        out, err = ingest.communicate()
        assert ingest.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["added"] + summary["duplicates"] == COCO_IMAGES and not summary["failed"]
        assert client.get("/collections/coco").json()["points"] == COCO_IMAGES
        hits = client.post("/search", json={"collection": "coco", "q": "dog", "limit": 300})
        assert hits.status_code == 200 and len(hits.json()["hits"]) == COCO_IMAGES
    assert statuses and set(statuses) == {200}, statuses  # searches during the ingest
    assert set(health) == {200}
    assert counts == sorted(counts)  # the points stored so far, growing
    # collections and search from other processes go through the server too.
    listed = run_pixseek(["collections", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    (coco,) = json_lines(listed.stdout)
    assert coco["points"] == COCO_IMAGES
    found = run_pixseek(["search", "dog", "-c", "coco", "--json", "--limit", "3"], env)
    assert found.returncode == 0, found.stderr
    assert len(json_lines(found.stdout)) == 3
    missing = run_pixseek(["search", "dog", "-c", "nope"], env)
    assert missing.returncode == 2 and "collection 'nope' does not exist" in missing.stderr
    # The index build is the server's, in the background: the command returns at once.
    optimized = run_pixseek(["collections", "optimize", "coco"], env)
    assert optimized.returncode == 0, optimized.stderr
    assert "the server is building the index in the background" in optimized.stdout


def _copy_images(target: Path, count: int) -> list[Path]:
    target.mkdir(parents=True)
    images = sorted((COCO / "val2017").glob("*.jpg"))[:count]
    return [Path(shutil.copy(image, target / image.name)) for image in images]


def test_post_ingest_inside_roots_only(served, tmp_path: Path):
    url, env, root = served
    _copy_images(root / "photos", 4)
    outside = tmp_path / "outside"
    _copy_images(outside, 2)
    (root / "escape").symlink_to(outside)
    nested = root / "nested"
    _copy_images(nested, 1)
    (nested / "link").symlink_to(outside)
    with httpx.Client(base_url=url, timeout=60) as client:
        for path in (
            str(outside),
            f"{root}/../outside",
            str(root / "escape"),
            str(root / "nested"),
            "/etc",
        ):
            answer = client.post("/ingest", json={"paths": [path], "collection": "r"})
            assert answer.status_code == 403, (path, answer.text)
            assert "allowed ingest roots" in answer.json()["detail"]
        bad_labels = {"paths": [str(root / "photos")], "collection": "r", "labels": "/etc/passwd"}
        assert client.post("/ingest", json=bad_labels).status_code == 403
        started = client.post(
            "/ingest",
            json={"paths": [str(root / "photos")], "collection": "r", "quantization": "int8"},
        )
        assert started.status_code == 202, started.text
        job = _wait_job(client, f"/ingest/{started.json()['job_id']}")
        assert job["state"] == "SUCCESS", job
        result = client.get(f"/ingest/{job['job_id']}/result").json()
        assert result["added"] == 4 and result["failed"] == []
        assert client.get("/collections/r").json()["points"] == 4
    listed = run_pixseek(["collections"], env)
    assert "int8" in listed.stdout, listed.stdout  # the storage chosen at creation is shown


def test_uploaded_archive_is_ingested_and_size_limited(served, tmp_path: Path):
    url, env, _ = served
    images = _copy_images(tmp_path / "up", 5)
    archive = tmp_path / "batch.tar"
    with tarfile.open(archive, "w") as tar:
        for image in images:
            tar.add(image, arcname=f"batch/{image.name}")
    with httpx.Client(base_url=url, timeout=60) as client:
        started = client.post(
            "/ingest/upload",
            params={"collection": "up", "filename": "batch.tar"},
            content=archive.read_bytes(),
            headers={"content-type": "application/octet-stream"},
        )
        assert started.status_code == 202, started.text
        job = _wait_job(client, f"/ingest/{started.json()['job_id']}")
        assert job["state"] == "SUCCESS", job
        assert client.get("/collections/up").json()["points"] == 5
        (hit,) = client.post("/search", json={"collection": "up", "q": "x", "limit": 1}).json()[
            "hits"
        ]
        assert client.get(hit["thumbnail_url"]).status_code == 200  # read back from the archive
        big = client.post(
            "/ingest/upload",
            params={"collection": "up", "filename": "big.zip"},
            content=b"\0" * (5 * 1024 * 1024),
            headers={"content-type": "application/octet-stream"},
        )
        assert big.status_code == 413
        not_archive = client.post(
            "/ingest/upload",
            params={"collection": "up", "filename": "x.exe"},
            content=b"1",
            headers={"content-type": "application/octet-stream"},
        )
        assert not_archive.status_code == 422
    uploads = Path(env["PIXSEEK_DATA_DIR"]) / "uploads"
    assert len(list(uploads.glob("*/*"))) == 1  # the refused uploads left nothing behind


def test_store_routes_need_the_local_secret(served):
    url, _, _ = served
    # Refused before the body is read: nothing here is ever unpickled.
    for headers in ({}, {"X-Pixseek-Local": "guess"}):
        for route in ("call", "scroll"):
            answer = httpx.post(f"{url}/_store/{route}", content=b"\x80junk", headers=headers)
            assert answer.status_code == 403, (route, answer.text)
    assert "/_store" not in json.dumps(httpx.get(f"{url}/openapi.json").json()["paths"])


def test_server_file_claim_liveness_and_stale_files(tmp_path: Path):
    from pixseek.serverfile import AlreadyServing, claim, find_server

    held = claim(tmp_path, "http://127.0.0.1:1")
    found = find_server(tmp_path)
    assert found is not None and found.pid == os.getpid() and found.secret == held.address.secret
    # Another process cannot claim it while this one holds the lock.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import pathlib, pixseek.serverfile as s; s.claim(pathlib.Path({str(tmp_path)!r}), 'x')",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "AlreadyServing" in probe.stderr
    held.release()
    assert find_server(tmp_path) is None
    # Files left by a killed server (no lock held) are ignored.
    (tmp_path / "server.json").write_text(json.dumps({"url": "x", "pid": 1, "started": 0}))
    (tmp_path / "server.secret").write_text("s")
    assert find_server(tmp_path) is None
    again = claim(tmp_path, "http://127.0.0.1:2")
    with pytest.raises(AlreadyServing, match="already running"):
        claim(tmp_path, "http://127.0.0.1:3")
    again.release()


def test_ingest_job_cancel_keeps_what_was_stored(served):
    url, _, root = served
    _copy_images(root / "many", 200)
    with httpx.Client(base_url=url, timeout=60) as client:
        started = client.post("/ingest", json={"paths": [str(root / "many")], "collection": "c"})
        job_url = f"/ingest/{started.json()['job_id']}"
        deadline = time.monotonic() + 120
        while client.get(job_url).json()["state"] != "INGESTING" and time.monotonic() < deadline:
            time.sleep(0.1)
        cancelled = client.delete(job_url).json()
        assert cancelled["progress"].get("cancel_requested") or cancelled["state"] == "REVOKED"
        job = _wait_job(client, job_url)
        assert job["state"] == "REVOKED" and job["status"] == "cancelled"
        assert client.get(f"{job_url}/result").status_code == 409
        stored = client.get("/collections/c")
        assert stored.status_code in (200, 404)  # created or not yet, never half-made
        if stored.status_code == 200:
            assert stored.json()["points"] < 200
        assert client.get("/ingest/00000000-0000-0000-0000-000000000000").status_code == 404
