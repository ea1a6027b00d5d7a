"""Search latency: text encoding, text queries, filtered vs unfiltered vector search, in one run.

    .venv/bin/python -m bench.search [--sizes 10000 100000] [--queries 200] [--local-queries 5]
                                     [--text-queries 30] [--optimize]

- Text encoding: OpenCLIP ViT-B-32 text tower with random weights (same FLOPs as the trained
  model), prompt-ensembled over the configured templates, on real COCO captions; uncached, plain
  (one prompt) and cached.
- Text queries end to end: encode (uncached) + `run_search`, the code path of the CLI/worker/API.
- Vector search: synthetic 512-d vectors drawn around 300 cluster centres (so neighbours are
  meaningful), payloads shaped like ingest's (1-4 COCO labels drawn with coco_mini's label frequencies,
  sources with year folders, sizes, formats, EXIF dates, cameras), at each size, on the embedded
  store (Qdrant Edge) and on qdrant-client local mode, each with and without filters written in
  the --where language. Timed at the store (`store.search` with the request `run_search` sends).
- Qdrant Edge is timed as pixseek leaves it after ingest (no optimizer run: plain segments) and,
  with --optimize, again after `store.optimize()` (HNSW built; ingest does it at 20k+ points).
- Local mode is timed in memory: its search and filter code is the same as on disk, but on disk it
  commits every point as a separate sqlite transaction, far too slow to load 100k points; that
  on-disk upsert rate is measured on a sample and reported.

Results: bench/results/search.json and search.md (written by bench/search_report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import REPO, RESULTS, percentiles, timed
from bench.search_report import markdown, targets

COCO = REPO.parent / "shared" / "datasets" / "coco_mini"
DIM = 512
FILTERS: dict[str, list[str]] = {
    "label=dog": ["label=dog"],
    "label in (cat, dog)": ["label in (cat, dog)"],
    "width>=4000": ["width>=4000"],
    "taken>=2023-01-01": ["taken>=2023-01-01"],
    "source~/2019/": ["source~/2019/"],
    "label=person AND taken>=2018-01-01": ["label=person", "taken>=2018-01-01"],
}
SIZES = [(4032, 3024), (3024, 4032), (4000, 3000), (1920, 1080), (1280, 960), (640, 480)]
CAMERAS = ["Apple iPhone 12", "Google Pixel 7", "Canon EOS 80D", "SONY ILCE-7M3", "FUJIFILM X-T3"]


def coco_label_counts() -> tuple[list[str], np.ndarray]:
    """The 80 COCO categories and how often coco_mini's images carry each (a realistic skew)."""
    counts: dict[str, int] = {}
    for line in (COCO / "labels.jsonl").read_text().splitlines():
        for label in json.loads(line)["labels"] or []:
            counts[label] = counts.get(label, 0) + 1
    names = sorted(counts, key=lambda name: (-counts[name], name))
    return names, np.array([counts[name] for name in names], dtype=np.float64)


class Corpus:
    """Clustered unit vectors with realistic payloads, generated deterministically in chunks."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        # Same centres for every corpus, so query vectors (another seed) land among the points.
        self.centres = np.random.default_rng(12345).normal(size=(300, DIM)).astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.categories, counts = coco_label_counts()
        self.label_p = counts / counts.sum()

    def vectors(self, count: int, spread: float = 0.9) -> np.ndarray:
        picks = self.rng.integers(len(self.centres), size=count)
        noise = self.rng.normal(size=(count, DIM)).astype(np.float32) * spread
        vectors = self.centres[picks] + noise
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def payload(self, index: int) -> dict[str, Any]:
        rng = self.rng
        picks = rng.choice(len(self.categories), size=rng.integers(1, 5), p=self.label_p)
        labels = list(dict.fromkeys(self.categories[i] for i in picks))
        year = int(rng.integers(2010, 2025))
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        fmt = str(rng.choice(["JPEG", "PNG", "WEBP"], p=[0.85, 0.1, 0.05]))
        payload: dict[str, Any] = {
            "root": "/home/user/Pictures",
            "source": f"photos/{year}/{int(rng.integers(1, 13)):02d}/IMG_{index:07d}.jpg",
            "labels": labels,
            "captions": [],
            "meta": {},
            "width": width,
            "height": height,
            "format": fmt,
            "bytes": int(width * height * rng.uniform(0.15, 0.45)),
            "sha256": f"{rng.integers(2**63):016x}" * 4,
            "mtime": float(datetime(year, 1, 1, tzinfo=UTC).timestamp() + rng.uniform(0, 3e7)),
        }
        if rng.random() < 0.8:
            taken = datetime(year, 1, 1, tzinfo=UTC).timestamp() + rng.uniform(0, 3.1e7)
            payload["taken"] = datetime.fromtimestamp(taken, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            payload["camera"] = str(rng.choice(CAMERAS))
        return payload

    def chunks(self, chunk: int = 1000):
        from pixseek.store.base import PointRecord

        for start in range(0, self.size, chunk):
            count = min(chunk, self.size - start)
            vectors = self.vectors(count)
            yield [
                PointRecord(
                    str(uuid.uuid5(uuid.NAMESPACE_OID, f"bench-{start + i}")),
                    {"clip": vectors[i]},
                    self.payload(start + i),
                )
                for i in range(count)
            ]


def load(store, name: str, corpus: Corpus, metadata: dict[str, Any]) -> float:
    store.create_collection(name, {"clip": DIM}, metadata)
    started = time.perf_counter()
    for points in corpus.chunks():
        store.upsert(name, points)
    return time.perf_counter() - started


def vector_search(store, name: str, queries: np.ndarray, count: int) -> dict[str, Any]:
    """Unfiltered and per-filter latency of the request `run_search` sends for a top-10 page."""
    from pixseek.search.filters import compile_filters

    from pixseek.store.base import Nearest, SearchRequest

    def one(vector: np.ndarray, flt) -> None:
        store.search(name, SearchRequest(Nearest(vector), limit=11, offset=0, filter=flt))

    for vector in queries[:3]:  # warm caches
        one(vector, None)
    result: dict[str, Any] = {}
    unfiltered = [timed(lambda v=v: one(v, None), 1)[0] for v in queries[:count]]
    result["unfiltered"] = percentiles(unfiltered)
    pooled: list[float] = []
    per_filter = {}
    total = store.count(name)
    for label, expressions in FILTERS.items():
        flt = compile_filters(expressions)
        one(queries[0], flt)
        samples = [timed(lambda v=v, f=flt: one(v, f), 1)[0] for v in queries[:count]]
        pooled.extend(samples)
        per_filter[label] = {
            **percentiles(samples),
            "selectivity": round(store.count(name, flt) / total, 4),
        }
    result["filtered"] = percentiles(pooled)
    result["filters"] = per_filter
    result["filtered_over_unfiltered_p50"] = round(
        result["filtered"]["p50_ms"] / result["unfiltered"]["p50_ms"], 3
    )
    return result


def text_queries(store, name: str, encoder, captions: list[str], count: int) -> dict[str, Any]:
    """Uncached encode + run_search per query, each part timed; then the same queries cached."""
    from pixseek.search.engine import run_search
    from pixseek.search.query import QuerySpec, Term

    encoder.clear_cache()
    encode, search, total = [], [], []
    for caption in captions[:count]:
        started = time.perf_counter()
        encoder.encode_text(caption)
        encoded = time.perf_counter()
        run_search(store, encoder, name, QuerySpec(terms=(Term("text", caption),)), limit=10)
        done = time.perf_counter()
        encode.append(encoded - started)
        search.append(done - encoded)
        total.append(done - started)
    cached = [
        timed(
            lambda c=c: run_search(
                store, encoder, name, QuerySpec(terms=(Term("text", c),)), limit=10
            ),
            1,
        )[0]
        for c in captions[:count]
    ]
    return {
        "encode": percentiles(encode),
        "search": percentiles(search),
        "total": percentiles(total),
        "total_cached_text": percentiles(cached),
    }


def text_encoding(encoder, captions: list[str], count: int) -> dict[str, Any]:
    encoder.clear_cache()
    encoder.encode_text("warm up")
    ensembled = timed_each(lambda c: encoder.encode_text(c), captions[:count])
    encoder.clear_cache()
    plain = timed_each(lambda c: encoder.encode_text(c, ensemble=False), captions[:count])
    cached = timed_each(lambda c: encoder.encode_text(c, ensemble=False), captions[:count])
    return {
        "templates": list(encoder.templates),
        "ensembled_uncached": percentiles(ensembled),
        "plain_uncached": percentiles(plain),
        "cached": percentiles(cached),
    }


def timed_each(fn: Callable[[str], Any], items: list[str]) -> list[float]:
    return [timed(lambda i=i: fn(i), 1)[0] for i in items]


def disk_upsert_rate(work: Path, count: int) -> float:
    from pixseek.store.server import ServerStore

    store = ServerStore(f"local:{work / 'local-disk'}")
    corpus = Corpus(count, seed=1)
    seconds = load(store, "disk", corpus, {})
    store.close()
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="timed queries per case")
    parser.add_argument("--local-queries", type=int, default=5, help="per case, local mode")
    parser.add_argument("--text-queries", type=int, default=30)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--optimize", action="store_true", help="also time Edge after optimize()")
    parser.add_argument("--disk-sample", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from pixseek.search.text_encoder import query_encoder

    from pixseek.config import load_settings
    from pixseek.models.random_weights import write_random_clip
    from pixseek.store.edge import EdgeStore
    from pixseek.store.server import ServerStore

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="pixseek-bench-search-"))
    model_dir = write_random_clip(work / "model", args.arch)
    os.environ["PIXSEEK_CLIP_MODEL"] = f"local-dir:{model_dir}"
    os.environ["PIXSEEK_DEVICE"] = "cpu"
    settings = load_settings()
    encoder = query_encoder(settings)
    assert encoder.dim == DIM, f"{args.arch} makes {encoder.dim}-d vectors, the bench uses {DIM}"
    rows = [json.loads(line) for line in (COCO / "labels.jsonl").read_text().splitlines()]
    captions = list(dict.fromkeys(c.strip() for row in rows for c in row["captions"]))
    rng = np.random.default_rng(42)
    rng.shuffle(captions)

    report: dict[str, Any] = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "command": " ".join(["python -m bench.search", *sys.argv[1:]]),
        "model": f"{args.arch} (random weights, {DIM}-d), text tower on CPU",
        "text_encoding": text_encoding(encoder, captions, args.text_queries),
        "sizes": {},
    }
    print("text encoding:", json.dumps(report["text_encoding"]), flush=True)
    metadata = {"models": {"clip": encoder.identifier}}
    for size in args.sizes:
        corpus_seed = size
        queries = Corpus(0, seed=size + 1).vectors(args.queries + 3, spread=1.2)
        entry: dict[str, Any] = {}
        edge = EdgeStore(work / f"edge-{size}")
        seconds = load(edge, "bench", Corpus(size, seed=corpus_seed), metadata)
        entry["edge"] = {
            "upsert_s": round(seconds, 2),
            "upsert_points_per_s": round(size / seconds),
            **vector_search(edge, "bench", queries, args.queries),
            "text_query": text_queries(edge, "bench", encoder, captions, args.text_queries),
        }
        print(size, "edge:", json.dumps(entry["edge"]), flush=True)
        if args.optimize:
            opt_started = time.perf_counter()
            edge.optimize("bench")  # what ingest runs at 20k+ points
            entry["edge_optimized"] = {
                "optimize_s": round(time.perf_counter() - opt_started, 2),
                **vector_search(edge, "bench", queries, args.queries),
            }
            print(size, "edge optimized:", json.dumps(entry["edge_optimized"]), flush=True)
        edge.drop_collection("bench")
        local = ServerStore("local::memory:")
        seconds = load(local, "bench", Corpus(size, seed=corpus_seed), metadata)
        text_count = min(args.local_queries, args.text_queries)
        entry["local"] = {
            "mode": "qdrant-client local mode, in memory",
            "upsert_s": round(seconds, 2),
            "upsert_points_per_s": round(size / seconds),
            **vector_search(local, "bench", queries, args.local_queries),
            "text_query": text_queries(local, "bench", encoder, captions, text_count),
        }
        local.close()
        print(size, "local:", json.dumps(entry["local"]), flush=True)
        entry["edge_speedup_over_local"] = {
            "unfiltered_p50": round(
                entry["local"]["unfiltered"]["p50_ms"] / entry["edge"]["unfiltered"]["p50_ms"], 1
            ),
            "filtered_p50": round(
                entry["local"]["filtered"]["p50_ms"] / entry["edge"]["filtered"]["p50_ms"], 1
            ),
        }
        report["sizes"][str(size)] = entry
    if args.disk_sample:
        report["local_on_disk_upsert_points_per_s"] = round(
            disk_upsert_rate(work, args.disk_sample)
        )
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["targets"] = targets(report)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "search.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
