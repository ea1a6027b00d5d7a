"""HTTP API text-query throughput at concurrency 1, 8 and 32, before and after micro-batching.

    .venv/bin/python -m bench.text_batching [--work DIR] [--points 10000] [--seconds 8]

A real `pixseek serve` (uvicorn, one process) over the embedded store with a random-weight
ViT-B-32 (bench.cli.prepare; its collections are reused with --work, else made here), one server
per setting, run one after the other in the same run:

  torch, one pass per request   PIXSEEK_TEXT_BACKEND=torch, PIXSEEK_TEXT_BATCH_MAX=1 (before)
  torch, micro-batched          PIXSEEK_TEXT_BACKEND=torch, PIXSEEK_TEXT_BATCH_MAX=64
  onnx fp32, one pass per request  PIXSEEK_TEXT_BATCH_MAX=1
  onnx fp32, micro-batched      PIXSEEK_TEXT_BATCH_MAX=64 (the default)

Every request is a text query never sent before (4 prompt templates), so neither the in-process
nor the on-disk cache (off here) answers it. At each concurrency, C client tasks send requests
back to back for --seconds after a warm-up; req/s is completed requests / wall time; p50 / p99 are
per-request latencies seen by the client. Results: bench/results/text_batching.json / .md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import REPO, cpu, load, percentiles, write_results
from bench.cli import ADJECTIVES, prepare
from bench.profile_search import THINGS, WORDS

BATCHED = {"PIXSEEK_TEXT_BATCH_MAX": "64"}
SETTINGS = {
    "torch, one pass per request (before)": {
        "PIXSEEK_TEXT_BACKEND": "torch",
        "PIXSEEK_TEXT_BATCH_MAX": "1",
    },
    "torch, micro-batched": {"PIXSEEK_TEXT_BACKEND": "torch", **BATCHED},
    "onnx fp32, one pass per request": {"PIXSEEK_TEXT_BATCH_MAX": "1"},
    "onnx fp32, micro-batched (default)": BATCHED,
}
_counter = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def query_text() -> str:
    i = next(_counter)
    return f"{ADJECTIVES[i % 8]} {WORDS[(i // 8) % 10]} {THINGS[(i // 80) % 10]} #{i}"


async def load_level(url: str, collection: str, concurrency: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0

    async def one(client: httpx.AsyncClient, record: bool) -> None:
        nonlocal errors
        body = {"collection": collection, "q": query_text(), "limit": 10}
        started = time.perf_counter()
        response = await client.post(f"{url}/search", json=body)
        if response.status_code != 200:
            errors += 1
        elif record:
            latencies.append(time.perf_counter() - started)

    async def worker(client: httpx.AsyncClient, until: float) -> None:
        while time.perf_counter() < until:
            await one(client, True)

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(one(client, False) for _ in range(concurrency)))  # warm-up
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(worker(client, until) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    stats = percentiles(latencies) if latencies else {}
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "req_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": stats.get("p50_ms"),
        "p99_ms": stats.get("p99_ms"),
    }


def serve(env: dict[str, str], port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pixseek", "serve", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL)


def wait_ready(url: str, collection: str, process: subprocess.Popen, timeout: float = 300) -> None:
    """Up, and the text model loaded (first query), before anything is timed."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"pixseek serve exited with {process.returncode}")
        try:
            body = {"collection": collection, "q": "warm-up", "limit": 1}
            if httpx.post(f"{url}/search", json=body, timeout=300).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("pixseek serve did not answer in time")


def run_setting(env: dict[str, str], collection: str, levels: list[int], seconds: float) -> list:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = serve(env, port)
    try:
        wait_ready(url, collection, process)
        return [asyncio.run(load_level(url, collection, c, seconds)) for c in levels]
    finally:
        process.terminate()
        process.wait(timeout=60)


def ensure_collection(env: dict[str, str], points: int) -> str:
    """The bench.cli collection of this size (made here when --work did not bring one), and the
    text tower's export, so every server below finds it ready."""
    name = f"p{points}"
    code = (
        "import sys; from pixseek.config import load_settings; from pixseek.store import open_store;"
        "from pixseek.search.text_encoder import query_encoder; from bench.profile_search import "
        "populate; s = load_settings(); st = open_store(s); e = query_encoder(s); "
        "e.export_now = True; e.encode_text('export the text tower now'); "
        f"st.get_collection('{name}') or populate(st, '{name}', {points}, e.identifier, e.dim); "
        "st.close()"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True)
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="bench.cli work directory to reuse")
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="pixseek-bench-batching-"))
    work.mkdir(parents=True, exist_ok=True)
    env = prepare(work)
    env["PIXSEEK_QUERY_CACHE_ENTRIES"] = "0"
    collection = ensure_collection(env, args.points)
    report: dict[str, Any] = {
        "machine": cpu(),
        "load_start": load(),
        "points": args.points,
        "seconds_per_level": args.seconds,
        "settings": {},
    }
    for label, extra in SETTINGS.items():
        rows = run_setting({**env, **extra}, collection, args.levels, args.seconds)
        report["settings"][label] = rows
        print(label, json.dumps(rows), file=sys.stderr, flush=True)
    report["load_end"] = load()
    write_results("text_batching", report, markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# HTTP API text-query throughput (bench/text_batching.py)",
        "",
        f"`pixseek serve`, random-weight ViT-B-32, {report['points']} points (Qdrant Edge), "
        f"new text query per request (4 templates), {report['seconds_per_level']} s per level. "
        f"Machine: {report['machine']['cpu']} ({report['machine']['cpus']} CPUs, shared with "
        f"other work); load average {report['load_start']} -> {report['load_end']}.",
        "",
        "| setting | concurrency | req/s | p50 ms | p99 ms | requests | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, rows in report["settings"].items():
        for row in rows:
            lines.append(
                f"| {label} | {row['concurrency']} | {row['req_per_s']} | {row['p50_ms']} | "
                f"{row['p99_ms']} | {row['requests']} | {row['errors']} |"
            )
    if report.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
