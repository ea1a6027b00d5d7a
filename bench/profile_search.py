"""Latency profile of the search path: text encode, vector search, payload fetch, serialisation.

    .venv/bin/python -m bench.profile_search [--points 10000 100000] [--queries 20] [--optimize]

Collections of N points in the embedded Qdrant Edge store, with ingest-shaped payloads (source,
root, sha256, bytes, mtime, labels, width, height, format) and random 512-d unit vectors: the
size of ViT-B-32's, the model the text queries go through (random weights: embedding 100k real
images would take hours and rank no better). Per query, in one process, as the CLI and the HTTP
API run it:

  text encode   QueryEncoder.encode_text, a query not seen before (4 prompt templates, batched)
  vector search the shard's query without payload
  payload fetch the same query with payload, minus the above
  engine        run_search (query planning, tie-safe window) minus its store call and encoding
  serialise     CLI: render.json_lines / render.table; API: the rest of the request (validation,
                response model, JSON), from an in-process client (no network)
  whole command `pixseek search ... --json` in a subprocess, and its start-up parts
  --optimize    the in-process stages again after store.optimize() (HNSW; ingest's 20k+ rule)

Results: bench/results/profile_search.json / .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import REPO, RESULTS

WORDS = ["red", "small", "old", "wet", "shiny", "dark", "tiny", "blue", "happy", "broken"]
THINGS = ["dog", "church", "truck", "fish", "parachute", "horn", "golf ball", "pump", "saw", "car"]


def ms(seconds: list[float]) -> dict[str, float]:
    values = sorted(1000 * s for s in seconds)
    return {
        "p50": round(statistics.median(values), 2),
        "p90": round(values[int(0.9 * (len(values) - 1))], 2),
        "mean": round(statistics.fmean(values), 2),
    }


def populate(store: Any, name: str, n: int, identifier: str, dim: int) -> float:
    from pixseek.store import PointRecord

    rng = np.random.default_rng(n)
    store.create_collection(name, {"clip": dim}, {"models": {"clip": identifier}})
    started = time.perf_counter()
    for start in range(0, n, 1000):
        vectors = rng.normal(size=(min(1000, n - start), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        points = []
        for i, vector in enumerate(vectors, start):
            label = THINGS[i % len(THINGS)]
            payload = {
                "root": "/data/photos",
                "source": f"album-{i // 500:04d}/IMG_{i:07d}.JPEG",
                "bytes": 100_000 + i,
                "mtime": 1.7e9 + i,
                "sha256": f"{i:064x}",
                "labels": [label],
                "width": 640,
                "height": 480,
                "format": "JPEG",
            }
            points.append(
                PointRecord(
                    id=f"00000000-0000-4000-8000-{i:012d}",
                    vectors={"clip": vector},
                    payload=payload,
                )
            )
        store.upsert(name, points)
    return time.perf_counter() - started


def timed(record: list[float], fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - started)

    return wrapper


def profile_in_process(store: Any, encoder: Any, name: str, queries: list[str], limit: int) -> dict:
    from pixseek.search import render
    from pixseek.search.engine import run_search
    from pixseek.search.query import QueryInput, build_query
    from qdrant_edge import Query, QueryRequest

    from pixseek.store.base import Nearest, SearchRequest

    stages: dict[str, list[float]] = defaultdict(list)
    shard = store._shard(name)  # the store's own open shard, for the payload-free variant
    for text in queries:
        started = time.perf_counter()
        vector = encoder.encode_text(text)
        stages["text encode"].append(time.perf_counter() - started)
        started = time.perf_counter()
        encoder.encode_text(text)
        stages["text encode (cached)"].append(time.perf_counter() - started)
        bare = QueryRequest(limit=limit + 1, query=Query.Nearest(vector.tolist(), using="clip"))
        started = time.perf_counter()
        shard.query(bare)
        stages["vector search"].append(time.perf_counter() - started)
        started = time.perf_counter()
        store.search(name, SearchRequest(Nearest(vector), limit + 1))
        stages["search + payload"].append(time.perf_counter() - started)
        spec = build_query(QueryInput(words=[text]))
        started = time.perf_counter()
        hits = run_search(store, encoder, name, spec, limit=limit)
        stages["run_search (cached encode)"].append(time.perf_counter() - started)
        started = time.perf_counter()
        render.json_lines(hits)
        stages["serialise json"].append(time.perf_counter() - started)
        started = time.perf_counter()
        render.table(hits, 0, 120)
        stages["serialise table"].append(time.perf_counter() - started)
    out = {stage: ms(values) for stage, values in stages.items()}
    payload = [
        a - b for a, b in zip(stages["search + payload"], stages["vector search"], strict=True)
    ]
    out["payload fetch"] = ms([max(0.0, p) for p in payload])
    return out


def profile_api(settings: Any, name: str, queries: list[str], limit: int) -> dict:
    import pixseek.api.routes_search as routes
    from fastapi.testclient import TestClient
    from pixseek.api.app import create_app
    from pixseek.search.text_encoder import QueryEncoder

    from pixseek.store.edge import EdgeStore

    encode: list[float] = []
    store_search: list[float] = []
    engine: list[float] = []
    total: list[float] = []
    originals = (QueryEncoder.encode_text, EdgeStore.search, routes.run_search)
    QueryEncoder.encode_text = timed(encode, originals[0])
    EdgeStore.search = timed(store_search, originals[1])
    routes.run_search = timed(engine, originals[2])
    try:
        with TestClient(create_app(settings)) as client:
            client.post("/search", json={"collection": name, "q": "warm-up", "limit": limit})
            for series in (encode, store_search, engine, total):
                series.clear()
            for text in queries:
                started = time.perf_counter()
                response = client.post(
                    "/search", json={"collection": name, "q": text, "limit": limit}
                )
                total.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text[:200]
    finally:
        QueryEncoder.encode_text, EdgeStore.search, routes.run_search = originals
    rest = [t - e for t, e in zip(total, engine, strict=True)]
    in_engine = [e - enc - s for e, enc, s in zip(engine, encode, store_search, strict=True)]
    return {
        "request total": ms(total),
        "text encode": ms(encode),
        "store search (with payload)": ms(store_search),
        "engine other": ms(in_engine),
        "HTTP + validation + serialise": ms(rest),
    }


def profile_cli(env: dict[str, str], name: str, runs: int) -> dict:
    def wall(cmd: list[str]) -> float:
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")
        return time.perf_counter() - started

    py = sys.executable
    load_model = (
        "import time; from pixseek.config import load_settings; s = load_settings(); "
        "from search.text_encoder import query_encoder; e = query_encoder(s); t = time.perf_counter(); "
        "e.model; print(time.perf_counter() - t)"
    )
    out: dict[str, list[float]] = defaultdict(list)
    for i in range(runs):
        out["python start-up"].append(wall([py, "-c", "pass"]))
        out["import pixseek.cli (all stages)"].append(wall([py, "-c", "import pixseek.cli"]))
        out["import torch"].append(wall([py, "-c", "import torch"]))
        out["import torch + open_clip"].append(wall([py, "-c", "import torch, open_clip"]))
        done = subprocess.run(
            [py, "-c", load_model], env=env, cwd=REPO, check=True, capture_output=True, text=True
        )
        out["model load (in process)"].append(float(done.stdout.strip().splitlines()[-1]))
        query = [
            py,
            "-m",
            "pixseek",
            "search",
            f"{WORDS[i % 10]} {THINGS[i % 10]}",
            "-c",
            name,
            "--json",
        ]
        out["whole `pixseek search --json`"].append(wall(query))
    return {stage: ms(values) for stage, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument(
        "--optimize", action="store_true", help="also profile after building the HNSW index"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # in-process part, report to a file
    args = parser.parse_args()
    if args.child:
        in_process_main(args)
        return

    from pixseek.models.random_weights import write_random_clip

    work = Path(tempfile.mkdtemp(prefix="pixseek-profile-"))
    model_dir = write_random_clip(work / "model", "ViT-B-32", seed=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")}
    env.update(HF_HUB_OFFLINE="1", PIXSEEK_DATA_DIR=str(work / "data"))
    env["PIXSEEK_CLIP_MODEL"] = f"local-dir:{model_dir}"
    # The embedded store can be open in one process at a time: the in-process part runs in a
    # child, so the CLI subprocesses afterwards find the store free.
    child = work / "in_process.json"
    cmd = [sys.executable, "-m", "bench.profile_search", "--child", str(child)]
    cmd += ["--queries", str(args.queries), "--limit", str(args.limit)]
    cmd += ["--optimize"] if args.optimize else []
    cmd += ["--points", *map(str, args.points)]
    subprocess.run(cmd, env=env, cwd=REPO, check=True)
    report = json.loads(child.read_text())
    report["cli"] = profile_cli(env, f"p{args.points[0]}", args.cli_runs)
    report["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profile_search.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "profile_search.md").write_text(markdown(report))
    print(markdown(report))


def in_process_main(args: argparse.Namespace) -> None:
    from pixseek.search.text_encoder import query_encoder

    from pixseek.config import load_settings
    from pixseek.store import open_store

    settings = load_settings()
    encoder = query_encoder(settings)
    started = time.perf_counter()
    encoder.model  # noqa: B018 - load it now, outside the per-query timings
    model_load = time.perf_counter() - started
    queries = [f"{WORDS[i % 10]} {THINGS[(i * 3) % 10]} {i}" for i in range(args.queries)]
    report: dict[str, Any] = {
        "what": "search latency by stage, ms (p50 / p90 / mean over distinct queries)",
        "model": "ViT-B-32 random weights, text tower fp32 eager (4 prompt templates)",
        "store": "Qdrant Edge (embedded), 512-d cosine, ingest-shaped payloads",
        "limit": args.limit,
        "queries": args.queries,
        "model_load_s": round(model_load, 2),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "collections": {},
    }
    for n in args.points:
        name = f"p{n}"
        store = open_store(settings)
        upsert_s = populate(store, name, n, encoder.identifier, encoder.dim)
        section: dict[str, Any] = {"upsert_s": round(upsert_s, 1)}
        section["in_process"] = profile_in_process(store, encoder, name, queries, args.limit)
        encoder.clear_cache()
        if args.optimize:  # what ingest does once a collection has 20k+ points
            started = time.perf_counter()
            store.optimize(name)
            section["optimize_s"] = round(time.perf_counter() - started, 1)
            section["in_process_after_optimize"] = profile_in_process(
                store, encoder, name, [q + " hnsw" for q in queries], args.limit
            )
            encoder.clear_cache()
        store.close()
        section["http_api"] = profile_api(settings, name, [q + " api" for q in queries], args.limit)
        report["collections"][name] = section
        print(json.dumps({name: section}), file=sys.stderr, flush=True)
    Path(args.child).write_text(json.dumps(report))


def markdown(report: dict) -> str:
    lines = ["# Search latency profile (bench/profile_search.py)", ""]
    lines.append(
        f"{report['what']}; {report['model']}; {report['store']}; top-{report['limit']}, "
        f"{report['queries']} queries. Model load (once per process): {report['model_load_s']} s. "
        f"Load average {report['load_avg_start']} -> {report['load_avg_end']}."
    )
    for name, section in report["collections"].items():
        lines += ["", f"## {name[1:]} points (upsert {section['upsert_s']} s)", ""]
        titles = [("in process (CLI path)", "in_process"), ("HTTP API", "http_api")]
        if "optimize_s" in section:
            after = f"in process, after optimize ({section['optimize_s']} s, HNSW built)"
            titles[1:] = [(after, "in_process_after_optimize"), ("HTTP API, indexed", "http_api")]
        for title, key in titles:
            lines += [f"{title}:", "", "| stage | p50 | p90 | mean |", "|---|---|---|---|"]
            for stage, v in section[key].items():
                lines.append(f"| {stage} | {v['p50']} | {v['p90']} | {v['mean']} |")
            lines.append("")
    lines += ["## CLI, whole command (ms)", "", "| part | p50 | p90 | mean |", "|---|---|---|---|"]
    for stage, v in report["cli"].items():
        lines.append(f"| {stage} | {v['p50']} | {v['p90']} | {v['mean']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
