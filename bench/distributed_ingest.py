"""Distributed ingest throughput: in process vs `--distributed` on 1 and 2 `pixseek worker`s.

    .venv/bin/python -m bench.distributed_ingest [--images 600] [--arch ViT-B-32]

Imagenette val images (the first N, in class order) are ingested into the embedded store, a
fresh data dir per run, with the real architecture's random weights (the trained model's FLOPs),
eager fp32 in every process (no ONNX export per worker). Workers are warmed up (model loaded)
before the timed run. The embedded store has one writer, the ingesting process: the points come
back through Redis and it writes them; its write step alone (JSON result -> points -> upsert)
is timed on the run's own points, which is the rate where adding workers stops helping.
Results: bench/results/distributed_ingest.json/.md, with the load averages around each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._common import DATASETS, RESULTS, cpu, load

IMAGENETTE = DATASETS / "imagenette"
REDIS = "redis://127.0.0.1:6379"
CLAIM_KEY = "pixseek-test:claim"  # the test suite's claim on a Redis database (tests/conftest.py)


def claim_db() -> tuple[str, Any]:
    import redis

    token = uuid.uuid4().hex
    for db in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        if client.set(CLAIM_KEY, token, nx=True, ex=3600):
            return f"{REDIS}/{db}", client
        client.close()
    raise SystemExit("every Redis database 1-15 is claimed")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixseek", "worker", "--loglevel", "info"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while " ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return proc


def ingest(env: dict[str, str], folder: Path, *extra: str) -> dict[str, Any]:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "pixseek", "ingest", str(folder), "-c", "bench", "--json", *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise SystemExit(run.stderr[-3000:])
    summary = json.loads(run.stdout)
    return {
        "images": summary["added"],
        "ingest_s": round(summary["seconds"], 2),  # plan -> finish, without process start
        "images_per_s": round(summary["added"] / summary["seconds"], 2),
        "wall_s": round(time.perf_counter() - started, 2),
    }


def writer_rate(data_dir: Path) -> dict[str, Any]:
    """Points/s of the coordinator's write step on this run's points: decode the JSON result,
    rebuild the points, upsert them into a new collection of the embedded store."""
    from pixseek.worker.distributed import write_shard
    from pixseek.worker.ingest_tasks import encode_point

    from pixseek.store.base import PointRecord
    from pixseek.store.edge import EdgeStore

    store = EdgeStore(data_dir / "collections")
    info = store.get_collection("bench")
    ids = [p.id for p in store.scroll("bench")]
    stored = store.retrieve("bench", ids, with_vectors=True)
    points = [PointRecord(p.id, p.vectors, p.payload) for p in stored]
    store.create_collection("copy", info.vectors, info.metadata)
    shards = [
        json.dumps({"points": [encode_point(p) for p in points[i : i + 256]]})
        for i in range(0, len(points), 256)
    ]
    started = time.perf_counter()
    for shard in shards:
        write_shard(store, "copy", json.loads(shard))
    seconds = time.perf_counter() - started
    store.close()
    return {
        "points": len(points),
        "seconds": round(seconds, 3),
        "points_per_s": round(len(points) / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--shard-size", type=int, default=64)
    args = parser.parse_args()

    from pixseek.models.random_weights import write_random_clip

    work = Path(tempfile.mkdtemp(prefix="pixseek-dist-bench-"))
    folder = work / "images"
    for path in sorted((IMAGENETTE / "val").glob("*/*.JPEG"))[: args.images]:
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / path.parent.name / path.name)
    warm_folder = work / "warm"
    warm_folder.mkdir()
    for path in sorted((IMAGENETTE / "val").glob("*/*.JPEG"))[-8:]:
        shutil.copy2(path, warm_folder / path.name)
    redis_url, claim = claim_db()
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")},
        "PIXSEEK_CLIP_MODEL": f"local-dir:{write_random_clip(work / 'model', args.arch)}",
        "PIXSEEK_DEVICE": "cpu",
        "PIXSEEK_BACKEND": "eager",
        "PIXSEEK_PRECISION": "fp32",
        "PIXSEEK_BROKER_URL": redis_url,
        "PIXSEEK_JOB_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
        "PIXSEEK_DATA_DIR": str(work / "worker-data"),
        "HF_HUB_OFFLINE": "1",
    }
    runs: list[dict[str, Any]] = []
    try:
        local_env = {**base, "PIXSEEK_THREADS": "2", "PIXSEEK_DATA_DIR": str(work / "local")}
        before = load()
        runs.append(
            {
                "mode": "in process",
                "threads": 2,
                "load_before": before,
                **ingest(local_env, folder),
                "load_after": load(),
            }
        )
        for count in (1, 2):
            threads = str(max(1, 2 // count))  # two cores: one thread per worker with two
            worker_env = {**base, "PIXSEEK_THREADS": threads, "OMP_NUM_THREADS": threads}
            procs = [start_worker(worker_env, work / f"w{count}-{n}.log") for n in range(count)]
            try:
                run_env = {**base, "PIXSEEK_DATA_DIR": str(work / f"dist{count}")}
                warm_env = {**run_env, "PIXSEEK_DATA_DIR": str(work / f"warm{count}")}
                ingest(warm_env, warm_folder, "--distributed", "--shard-size", "1")
                before = load()
                result = ingest(
                    run_env, folder, "--distributed", "--shard-size", str(args.shard_size)
                )
                runs.append(
                    {
                        "mode": f"--distributed, {count} worker(s)",
                        "threads": int(threads),
                        "load_before": before,
                        **result,
                        "load_after": load(),
                    }
                )
            finally:
                for proc in procs:
                    os.killpg(proc.pid, 15)
                    proc.wait(60)
        writer = writer_rate(work / "dist2")
    finally:
        for key in claim.scan_iter(count=1000):
            claim.delete(key)
    one, two = runs[1]["images_per_s"], runs[2]["images_per_s"]
    result = {
        "arch": args.arch,
        "weights": "random (same FLOPs as trained), eager fp32",
        "images": args.images,
        "shard_size": args.shard_size,
        "runs": runs,
        "two_over_one_worker": round(two / one, 2),
        "single_writer": writer,
        **cpu(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed_ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
