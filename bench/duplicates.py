"""Near-duplicate benchmark: hash quality per transformation, the real `near` tier, and timing.

    .venv/bin/python -m bench.duplicates [--work DIR] [--per-class 15] [--coco 100]
                                         [--sizes 10000 100000] [--skip-e2e]

1. Quality of the hash alone: the set of bench/duplicates_set.py (real images x 19
   transformations, hard negatives = other images of the same class), decoded as ingest does,
   hashed with pHash and dHash (ours and imagehash's), every pair compared, per threshold.
2. The `near` tier end to end: the set ingested with `pixseek ingest` (tiny random CLIP, so the
   CLIP confirmation is a real cosine of an untrained model), then `find_duplicates`; groups
   scored pair by pair as in 1.
3. Time of the tiers on synthetic collections (Qdrant Edge; 512-d CLIP vectors, 64-bit hashes,
   10% of the points with 1-3 planted near copies).

Results: bench/results/duplicates.json and duplicates.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import RESULTS, cpu, load, write_results
from bench.duplicates_quality import evaluate, hash_all, negative_distances, score_pairs
from bench.duplicates_report import markdown
from bench.duplicates_set import build

THRESHOLDS = [0, 2, 4, 6, 8, 10, 11, 12, 14, 16]


def quality(root: Path, manifest: list[dict]) -> dict[str, Any]:
    hashes, ms = hash_all(root, manifest)
    return {
        "hash_ms_per_image": ms,
        "methods": {
            name: {
                "thresholds": evaluate(values, manifest, THRESHOLDS),
                "distinct_pictures": negative_distances(values, manifest),
            }
            for name, values in hashes.items()
        },
        "identical_to_imagehash": {
            "phash": hashes["phash"] == hashes["imagehash.phash"],
            "dhash": hashes["dhash"] == hashes["imagehash.dhash"],
        },
    }


def end_to_end(work: Path, root: Path, manifest: list[dict]) -> dict[str, Any]:
    from pixseek.search.duplicates import DuplicateOptions, find_duplicates

    from pixseek.models.random_weights import write_random_clip
    from pixseek.store.edge import EdgeStore

    model = work / "tiny-clip"
    if not model.is_dir():
        write_random_clip(model)
    env = {
        **os.environ,
        "PIXSEEK_DATA_DIR": str(work / "data"),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{model}",
        "HF_HUB_OFFLINE": "1",
    }
    started = time.perf_counter()
    ingest = subprocess.run(
        [sys.executable, "-m", "pixseek", "ingest", str(root), "-c", "dupbench", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    ingest_s = time.perf_counter() - started
    summary = json.loads(ingest.stdout.strip().splitlines()[-1])
    store = EdgeStore(work / "data" / "collections")
    index = {entry["file"]: i for i, entry in enumerate(manifest)}
    out: dict[str, Any] = {"ingest_seconds": round(ingest_s, 1), "ingested": summary["added"]}
    for label, options in (
        ("near (hash <= 10, CLIP >= 0.80)", DuplicateOptions()),
        ("near, hash only (<= 10)", DuplicateOptions(confirm=None)),
        ("near, hash only (<= 12)", DuplicateOptions(confirm=None, max_distance=12)),
    ):
        report = find_duplicates(store, "dupbench", options)
        pred = np.zeros((len(manifest), len(manifest)), dtype=bool)
        for group in report.groups:
            members = [index[p["source"]] for p in group.points]
            pred[np.ix_(members, members)] = True
        out[label] = {
            **score_pairs(pred, manifest),
            "seconds": round(report.seconds, 2),
            "groups": len(report.groups),
        }
    store.close()
    return out


def synthetic(store: Any, name: str, points: int, rng: np.random.Generator) -> float:
    """Load `points` synthetic points; returns the load time in seconds."""
    from pixseek.phash import PHASH_VECTOR, to_hex, to_vector
    from pixseek.store import PointRecord

    store.create_collection(name, {"clip": 512, PHASH_VECTOR: 64}, {})
    started = time.perf_counter()
    batch: list[PointRecord] = []
    made = 0
    while made < points:
        value = int(rng.integers(0, 2**63)) << 1 | int(rng.integers(0, 2))
        base = rng.standard_normal(512).astype(np.float32)
        copies = int(rng.integers(1, 4)) if rng.random() < 0.1 else 0
        for c in range(min(copies + 1, points - made)):
            flipped = value
            for bit in rng.choice(64, size=int(rng.integers(0, 7)) if c else 0, replace=False):
                flipped ^= 1 << int(bit)
            clip = base + (0.1 * rng.standard_normal(512).astype(np.float32) if c else 0)
            payload = {
                "source": f"s/{made}.jpg",
                "width": 640,
                "height": 480,
                "mtime": 1.7e9 + made,
                "sha256": uuid.uuid4().hex,
                PHASH_VECTOR: to_hex(flipped),
            }
            vectors = {"clip": clip / np.linalg.norm(clip), PHASH_VECTOR: to_vector(flipped)}
            batch.append(PointRecord(str(uuid.uuid4()), vectors, payload))
            made += 1
        if len(batch) >= 1000:
            store.upsert(name, batch)
            batch = []
    store.upsert(name, batch)
    return time.perf_counter() - started


def timing(work: Path, sizes: list[int]) -> list[dict[str, Any]]:
    from pixseek.search.duplicates import DuplicateOptions, find_duplicates

    from pixseek.store.edge import EdgeStore

    rows = []
    for size in sizes:
        store = EdgeStore(work / f"synthetic-{size}")
        load_s = synthetic(store, "synthetic", size, np.random.default_rng(size))
        row: dict[str, Any] = {"points": size, "load_seconds": round(load_s, 1), "load_avg": load()}
        tiers = [
            ("near", DuplicateOptions()),
            ("near, hash only", DuplicateOptions(confirm=None)),
            ("exact", DuplicateOptions(tier="exact")),
        ]
        if size <= 10_000:
            tiers.append(("similar", DuplicateOptions(tier="similar", similarity=0.95)))
        for label, options in tiers:
            report = find_duplicates(store, "synthetic", options)
            row[label] = {
                "seconds": round(report.seconds, 2),
                "groups": len(report.groups),
                "queries": report.queries,
                "ms_per_query": round(1000 * report.seconds / report.queries, 3)
                if report.queries
                else None,
            }
        rows.append(row)
        store.drop_collection("synthetic")
    return rows


def indexed(work: Path, size: int, sample: int) -> dict[str, Any]:
    """Exact scans against the HNSW index on the `phash` vector: time per query, and how many
    of the exact neighbours (within 10 bits) the index returns, on a sample of the points."""
    from pixseek.search.duplicates import NEAR_MAX_DISTANCE

    from pixseek.phash import PHASH_VECTOR, from_hex, score_for_distance, to_vector
    from pixseek.store import Nearest, SearchRequest
    from pixseek.store.edge import EdgeStore

    store = EdgeStore(work / f"indexed-{size}")
    load_s = synthetic(store, "synthetic", size, np.random.default_rng(size))
    started = time.perf_counter()
    status = store.optimize("synthetic")
    optimize_s = time.perf_counter() - started
    points = list(store.scroll("synthetic", [PHASH_VECTOR]))[:sample]
    requests = [
        SearchRequest(
            Nearest(to_vector(from_hex(p.payload[PHASH_VECTOR])), using=PHASH_VECTOR),
            limit=65,
            threshold=score_for_distance(NEAR_MAX_DISTANCE),
        )
        for p in points
    ]
    runs: dict[str, Any] = {}
    for label, exact in (("exact", True), ("hnsw", False)):
        started = time.perf_counter()
        found = []
        for start in range(0, len(requests), 256):
            found += store.search_batch("synthetic", requests[start : start + 256], [], exact)
        runs[label] = {"seconds": time.perf_counter() - started, "found": found}
    truth = [{h.id for h in hits} for hits in runs["exact"]["found"]]
    got = [{h.id for h in hits} for hits in runs["hnsw"]["found"]]
    relevant = sum(len(t) - 1 for t in truth)  # the point itself always comes back
    recalled = sum(len(t & g) - 1 for t, g in zip(truth, got, strict=True))
    store.drop_collection("synthetic")
    return {
        "points": size,
        "sample": len(requests),
        "load_seconds": round(load_s, 1),
        "optimize_seconds": round(optimize_s, 1),
        "index": status.describe(),
        "exact_ms_per_query": round(1000 * runs["exact"]["seconds"] / len(requests), 3),
        "hnsw_ms_per_query": round(1000 * runs["hnsw"]["seconds"] / len(requests), 3),
        "hnsw_recall_of_near_pairs": round(recalled / relevant, 4) if relevant else None,
        "near_pairs_in_sample": relevant,
        "load_avg": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--per-class", type=int, default=15)
    parser.add_argument("--coco", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--indexed-only",
        type=int,
        metavar="POINTS",
        help="Only compare exact scans with the HNSW index at this size, added to the last report.",
    )
    parser.add_argument("--sample", type=int, default=3000)
    args = parser.parse_args()
    if args.indexed_only:
        work = args.work or Path(tempfile.mkdtemp(prefix="pixseek-dupbench-"))
        report = json.loads((RESULTS / "duplicates.json").read_text())
        report["indexed"] = indexed(work, args.indexed_only, args.sample)
        write_results("duplicates", report, markdown(report))
        print(json.dumps(report["indexed"], indent=2))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="pixseek-dupbench-"))
    root = work / "set"
    manifest = build(root, args.per_class, args.coco)
    report: dict[str, Any] = {
        "machine": {**cpu(), "load_avg_start": load()},
        "set": {
            "images": len(manifest),
            "originals": sum(e["transform"] == "orig" for e in manifest),
            "per_class": args.per_class,
            "coco": args.coco,
        },
    }
    report["quality"] = quality(root, manifest)
    print("quality done", load(), flush=True)
    if not args.skip_e2e:
        report["end_to_end"] = end_to_end(work, root, manifest)
        print("end to end done", load(), flush=True)
    report["timing"] = timing(work, args.sizes)
    report["machine"]["load_avg_end"] = load()
    write_results("duplicates", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
