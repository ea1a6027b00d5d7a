"""Shared fixtures: tiny random models written to temp dirs, isolated data dirs, CLI runners.

No test touches the network: HF_HUB_OFFLINE is set before anything imports huggingface_hub.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
