"""Shared fixtures: tiny random models written to temp dirs, isolated data dirs, CLI runners.

No test touches the network: HF_HUB_OFFLINE is set before anything imports huggingface_hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
COCO = DATASETS / "coco_mini"
IMAGENETTE = DATASETS / "imagenette"


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pixseek.models.random_weights import write_random_clip

    return write_random_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pixseek.models.random_weights import write_random_dino

    return write_random_dino(tmp_path_factory.mktemp("models") / "tiny-dino")


@pytest.fixture
def pixseek_env(tmp_path: Path, tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Environment for a pixseek run on the embedded store in a fresh data dir."""
    env = {
        "PIXSEEK_DATA_DIR": str(tmp_path / "data"),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
        "PIXSEEK_BATCH_SIZE": "16",
    }
    for key in [k for k in os.environ if k.startswith("PIXSEEK_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def cli(pixseek_env: dict):
    """Run the pixseek CLI in-process; returns (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from pixseek.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run


def run_pixseek(args: list[str], env: dict, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `pixseek` console entry point in a subprocess."""
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "pixseek", *map(str, args)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """Both store backends: Qdrant Edge, and qdrant-client local mode (the server's API)."""
    from pixseek.store.edge import EdgeStore
    from pixseek.store.server import ServerStore

    if request.param == "edge":
        backend = EdgeStore(tmp_path / "edge")
    else:
        backend = ServerStore(f"local:{tmp_path / 'local'}")
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def tiny_t2i_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Stable Diffusion pipeline directory (save_pretrained layout)."""
    from pixseek.models.random_weights import write_random_t2i

    return write_random_t2i(tmp_path_factory.mktemp("models") / "tiny-t2i")


REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_CLAIM_KEY = "pixseek-test:claim"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database of its own for this test session, at 127.0.0.1:6379.

    Databases 15 down to 1 are tried; one is claimed with a SET NX key, so test sessions running
    side by side on one machine never share Celery queues, results or unacked messages. Every
    key in the claimed database is deleted afterwards. Skips when no Redis answers.
    """
    import uuid

    import redis

    token = uuid.uuid4().hex
    for db in range(15, 0, -1):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_connect_timeout=2)
        try:
            claimed = client.set(REDIS_CLAIM_KEY, token, nx=True, ex=3600)
        except redis.exceptions.ConnectionError:
            pytest.skip(f"no Redis server at {REDIS_HOST}:{REDIS_PORT}")
        if claimed:
            break
        client.close()
    else:
        pytest.skip("every Redis database 1-15 is claimed by another test session")
    for key in client.scan_iter(count=1000):  # leftovers of a session that was killed
        if key != REDIS_CLAIM_KEY.encode():
            client.delete(key)
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        if client.get(REDIS_CLAIM_KEY) == token.encode():
            for key in client.scan_iter(count=1000):
                client.delete(key)
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_process(env: dict[str, str], log: Path, *args: str) -> Iterator[tuple[str, Any]]:
    """A real `pixseek serve` subprocess on a free port: yields (base URL, process) once
    /health answers 200; stopped with SIGTERM (SIGKILL after 20 s) on the way out."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pixseek", "serve", "--host", "127.0.0.1", "--port", str(port)]
            + list(args),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"pixseek serve exited:\n{log.read_text()}"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{base}/health", timeout=2) as response,
            ):
                if response.status == 200:
                    break
            assert time.monotonic() < deadline, f"no /health after 120 s:\n{log.read_text()}"
            time.sleep(0.3)
        yield base, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
