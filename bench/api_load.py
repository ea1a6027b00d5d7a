"""HTTP API under load after the hardening of issue 15: text, filtered and upload searches.

    .venv/bin/python -m bench.api_load [--seconds 6] [--concurrency 1 8 32] [--model tiny]

A real `pixseek serve` (uvicorn, one process, default limits) over the embedded store holding
coco_mini (239 images, labels), with a random-weight CLIP (`tiny`: the tests' model, so the
figures are the server's own cost; `vit-b-32`: the demo's architecture). For each kind and
concurrency C, C client threads send requests back to back for --seconds:

  text      POST /search {"q": a text never sent before}          (no cache answers it)
  filtered  the same with `where: ["label in (dog, cat, person)", "width>=300"]`
  upload    multipart: the same JSON as `query` and one 320x240 JPEG as `images`

Every answer other than 200 counts as an error. req/s is completed requests / wall time;
latencies are per request as the client sees them. The machine is shared: the load average is
recorded next to the numbers. Results: bench/results/api_load.json / .md.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import DATASETS, cpu, load, percentiles, write_results
from bench.text_batching import free_port, serve, wait_ready

NAME = "api_load"
COCO = DATASETS / "coco_mini"
FILTERS = ["label in (dog, cat, person)", "width>=300"]
_counter = itertools.count()


def jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (320, 240), (120, 80, 200)).save(out, format="JPEG")
    return out.getvalue()


def request_for(kind: str, image: bytes) -> dict[str, Any]:
    body: dict[str, Any] = {"collection": "coco", "q": f"photo {next(_counter)}", "limit": 10}
    if kind == "filtered":
        body["where"] = FILTERS
    if kind == "upload":
        body["q"] = ""
        return {"data": {"query": json.dumps(body)}, "files": {"images": ("q.jpg", image)}}
    return {"json": body}


def level(url: str, kind: str, threads: int, seconds: float) -> dict[str, Any]:
    image = jpeg()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < stop:
                began = time.perf_counter()
                try:
                    status = str(http.post("/search", **request_for(kind, image)).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    latencies.append(time.perf_counter() - began)
                    if status != "200":
                        errors.append(status)

    started = time.monotonic()
    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.monotonic() - started
    return {
        "kind": kind,
        "concurrency": threads,
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "requests_per_s": round(len(latencies) / wall, 1),
        **percentiles(latencies),
        "load_avg": load(),
    }


def model_dir(work: Path, model: str) -> Path:
    from pixseek.models.random_weights import write_random_clip

    if model == "tiny":
        return write_random_clip(work / "tiny-clip")
    target = work / "vit-b-32"
    done = subprocess.run(
        [sys.executable, "-m", "pixseek", "models", "random", str(target), "--arch", "ViT-B-32"],
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit("could not write the random ViT-B-32")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--kinds", nargs="+", default=["text", "filtered", "upload"])
    parser.add_argument("--model", choices=["tiny", "vit-b-32"], default="tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pixseek-api-load-") as tmp:
        work = Path(tmp)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")},
            "PIXSEEK_DATA_DIR": str(work / "data"),
            "PIXSEEK_CLIP_MODEL": f"local-dir:{model_dir(work, args.model)}",
            "PIXSEEK_TEXT_BACKEND": "torch",  # no ONNX export inside the measurement
            "PIXSEEK_QUERY_CACHE_ENTRIES": "0",
            "HF_HUB_OFFLINE": "1",
        }
        labels = COCO / "labels.jsonl"
        ingest = [sys.executable, "-m", "pixseek", "ingest", str(COCO), "--labels", str(labels)]
        subprocess.run([*ingest, "-c", "coco", "--json"], env=env, check=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = serve(env, port)
        try:
            wait_ready(url, "coco", process)
            rows = [
                level(url, kind, threads, args.seconds)
                for kind in args.kinds
                for threads in args.concurrency
            ]
        finally:
            process.terminate()
            process.wait(timeout=60)
    report = {
        "model": args.model,
        "seconds_per_level": args.seconds,
        "machine": cpu(),
        "load_avg_end": load(),
        "rows": rows,
    }
    write_results(NAME, report, markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# HTTP API load (bench/api_load.py), after the issue 15 limits",
        "",
        f"`pixseek serve` with default limits over coco_mini (239 images), random-weight "
        f"`{report['model']}` CLIP, torch text tower, no query cache; "
        f"{report['seconds_per_level']:g} s per row; {report['machine']['cpu']}, "
        f"{report['machine']['cpus']} CPUs, shared with other sessions (load average per row).",
        "",
        "| kind | concurrency | requests | errors | req/s | p50 ms | p95 ms | p99 ms | load 1/5/15 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['kind']} | {row['concurrency']} | {row['requests']} | {row['errors']} "
            f"| {row['requests_per_s']} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} "
            f"| {row['p99_ms']:.1f} | {' / '.join(map(str, row['load_avg']))} |"
        )
    total = sum(row["errors"] for row in report["rows"])
    worst = max(row["load_avg"][0] for row in report["rows"])
    lines += ["", f"Errors in all: {total}."]
    if worst > 2 * report["machine"]["cpus"]:
        lines += [
            "",
            f"The 1-minute load average reached {worst} on {report['machine']['cpus']} CPUs "
            "(other sessions' test suites): latencies and req/s swing with it from row to row, "
            "so read the error count and the order of magnitude, not ratios between rows.",
        ]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
