"""`pixseek ingest --distributed` end to end: real Redis, two real `pixseek worker` processes.

The collection is on the embedded store, which only the ingesting process holds: the workers
send the points back in their task results. Each test ingests into a data dir of its own (read
by this process only at the end, since the embedded store stays open in the process that read
it); the module's two workers share a Redis database of their own and a unique queue.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pixseek.store.base import SparseVector
from tests.conftest import IMAGENETTE, serve_process
from tests.test_worker import WorkerProcess

pytestmark = pytest.mark.timeout(240)

CLASSES = ["n01440764", "n02102040", "n03000684"]


def image_folder(folder: Path, per_class: int) -> Path:
    """`per_class` Imagenette images of each of three classes, plus one copy of an image under
    another name (identical content in a later shard: stored as a copy, embedded once)."""
    for wnid in CLASSES:
        (folder / wnid).mkdir(parents=True)
        for path in sorted((IMAGENETTE / "val" / wnid).glob("*.JPEG"))[:per_class]:
            shutil.copy2(path, folder / wnid / path.name)
    first = sorted((folder / CLASSES[0]).iterdir())[0]
    shutil.copy2(first, folder / CLASSES[-1] / "zz_copy.JPEG")
    return folder


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, redis_url: str
) -> Iterator[tuple[dict[str, str], list[WorkerProcess]]]:
    if not IMAGENETTE.is_dir():
        pytest.skip(f"{IMAGENETTE} is missing")
    root = tmp_path_factory.mktemp("distributed")
    env = {
        "PIXSEEK_DATA_DIR": str(root / "worker-data"),  # never opened: results travel back
        "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
        "PIXSEEK_DEVICE": "cpu",
        "PIXSEEK_BACKEND": "eager",  # no ONNX export at the first shard of each worker
        "PIXSEEK_PRECISION": "fp32",
        "PIXSEEK_BROKER_URL": redis_url,
        "PIXSEEK_JOB_QUEUE": f"ingest-test-{uuid.uuid4().hex[:8]}",
        "PIXSEEK_JOB_TIME_LIMIT": "120",
        # A shard whose worker died goes back to the queue after this long; longer than any
        # shard here takes (a slower one would just be embedded twice, with the same ids).
        "PIXSEEK_BROKER_VISIBILITY_TIMEOUT": "15",
        "PIXSEEK_DECODE_WORKERS": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    pool = [WorkerProcess(env, root / f"worker-{n}.log") for n in range(2)]
    try:
        for worker in pool:
            worker.start()
        yield env, pool
    finally:
        for worker in pool:
            worker.stop()
            print(worker.output()[-2000:])


def stored(data_dir: Path, collection: str) -> dict[tuple[str, str], tuple[str, dict, dict]]:
    from pixseek.store.edge import EdgeStore

    store = EdgeStore(data_dir / "collections")
    ids = [point.id for point in store.scroll(collection)]
    points = store.retrieve(collection, ids, with_vectors=True)
    store.close()
    return {(p.payload["root"], p.payload["source"]): (p.id, p.payload, p.vectors) for p in points}


def run_in_process(args: list, env: dict[str, str]) -> str:
    """The CLI in this process (no interpreter and torch start to wait for); returns stdout."""
    from click.testing import CliRunner

    from pixseek.cli import main

    full: dict[str, str | None] = {"PIXSEEK_QDRANT_URL": None, **env}  # None: unset
    result = CliRunner().invoke(main, [str(a) for a in args], env=full, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def ingest_args(folder: Path, *extra: str) -> list:
    return ["ingest", folder, "-c", "photos", "--labels-from-folders", "--json", *extra]


def test_points_travel_back_exactly():
    """Through the task result (JSON): float32 bits unchanged, sparse vectors as they were."""
    from pixseek.worker.ingest_tasks import decode_point, encode_point

    from pixseek.store.base import PointRecord

    rng = np.random.default_rng(0)
    dense = rng.standard_normal(512).astype(np.float32)
    sparse = SparseVector([3, 17, 90001], [0.5, 1.25, 2.0])
    point = PointRecord("id-1", {"clip": dense, "phash": [1.0, -1.0], "text": sparse}, {"a": [1]})
    back = decode_point(json.loads(json.dumps(encode_point(point))))
    assert back.id == "id-1" and back.payload == {"a": [1]}
    assert back.vectors["clip"].tobytes() == dense.tobytes()
    assert list(back.vectors["phash"]) == [1.0, -1.0] and back.vectors["text"] == sparse


def test_two_workers_store_what_a_local_run_stores(workers, tmp_path):
    env, _ = workers
    folder = image_folder(tmp_path / "photos", per_class=20)
    local = run_in_process(
        ingest_args(folder), {**env, "PIXSEEK_DATA_DIR": str(tmp_path / "local")}
    )
    dist_env = {**env, "PIXSEEK_DATA_DIR": str(tmp_path / "dist")}
    dist = run_in_process(ingest_args(folder, "--distributed", "--shard-size", "8"), dist_env)
    expected, got = json.loads(local), json.loads(dist)
    for key in ("added", "updated", "skipped", "duplicates", "failed", "duplicate_files"):
        assert got[key] == expected[key], key
    assert (got["added"], got["duplicates"]) == (60, 1)

    want, have = stored(tmp_path / "local", "photos"), stored(tmp_path / "dist", "photos")
    assert have.keys() == want.keys() and len(have) == 61
    for key, (point_id, payload, vectors) in want.items():
        other_id, other_payload, other_vectors = have[key]
        assert other_id == point_id and other_payload == payload, key
        assert other_payload["labels"] == [key[1].split("/")[0]]
        assert other_vectors.keys() == vectors.keys()
        for name, vector in vectors.items():
            if isinstance(vector, SparseVector):  # the keyword index's BM25 weights
                assert other_vectors[name] == vector, (key, name)
            else:
                np.testing.assert_allclose(other_vectors[name], vector, atol=1e-5)


def test_workers_write_through_a_running_serve(workers, tmp_path):
    """With `pixseek serve` on the data dir, the workers upsert through it (RemoteStore)."""
    from pixseek.config import load_settings
    from pixseek.store import open_store

    env, _ = workers  # the workers' own data dir: they find the server in it
    folder = image_folder(tmp_path / "photos", per_class=8)
    with serve_process({**os.environ, **env}, tmp_path / "serve.log"):
        run = run_in_process(ingest_args(folder, "--distributed", "--shard-size", "6"), env)
        summary = json.loads(run)
        assert (summary["added"], summary["duplicates"], summary["failed"]) == (24, 1, [])
        store = open_store(load_settings(env))
        assert type(store).__name__ == "RemoteStore"
        points = list(store.scroll("photos", fields=["source", "labels"]))
    assert len(points) == 25 and len({p.id for p in points}) == 25
    assert all(p.payload["labels"] == [p.payload["source"].split("/")[0]] for p in points)


def test_qdrant_local_mode_gets_the_points_back_from_the_workers(workers, tmp_path):
    from pixseek.store.server import ServerStore

    env, _ = workers
    folder = image_folder(tmp_path / "photos", per_class=8)
    local = f"local:{tmp_path / 'qdrant'}"
    run = run_in_process(
        ingest_args(folder, "--distributed", "--shard-size", "6"),
        {**env, "PIXSEEK_DATA_DIR": str(tmp_path / "data"), "PIXSEEK_QDRANT_URL": local},
    )
    assert json.loads(run)["added"] == 24
    store = ServerStore(local)
    points = list(store.scroll("photos", fields=["source"]))
    assert len(points) == 25 and len({p.payload["source"] for p in points}) == 25


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(workers, tmp_path):
    env, (victim, survivor) = workers
    folder = image_folder(tmp_path / "photos", per_class=40)
    victim.stop()  # a fresh start: its first shard loads the model, so the kill lands mid-shard
    victim.start()
    run_env = {**os.environ, **env, "PIXSEEK_DATA_DIR": str(tmp_path / "data")}
    args = [*ingest_args(folder, "--distributed", "--shard-size", "12")]
    run = subprocess.Popen(
        [sys.executable, "-m", "pixseek", *map(str, args)],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "ingest shard" not in victim.output():
            assert run.poll() is None and time.monotonic() < deadline, victim.output()
            time.sleep(0.02)
        victim.kill(signal.SIGKILL)
        shard = re.search(r"ingest shard (\S+): (\d+) files, delivery 1", victim.output())
        assert shard is not None
        out, err = run.communicate(timeout=150)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    summary = json.loads(out)
    assert (summary["added"], summary["duplicates"], summary["failed"]) == (120, 1, [])
    redone = f"ingest shard {shard.group(1)}: {shard.group(2)} files, delivery 2"
    assert redone in survivor.output()  # the shard it was embedding, done again by the other
    points = stored(tmp_path / "data", "photos")
    assert len(points) == 121 and len({pid for pid, _, _ in points.values()}) == 121
