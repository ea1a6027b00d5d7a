"""Large collections on the embedded store: exact float32 vs int8 vs binary quantization.

    nice .venv/bin/python -m bench.scale [--points 100000 1000000] [--settings none,int8,binary]
                                          [--queries 200] [--work DIR] [--query-lock PATH]

Per (points, storage setting), in fresh processes so memory is measured cleanly:
- build: synthetic 512-d unit vectors around 300 cluster centres with ingest-shaped payloads
  (bench.search.Corpus: COCO label frequencies, year folders, sizes, EXIF dates) upserted in
  batches of 1,000 through `EdgeStore.upsert` (payload generation is not timed), then
  `EdgeStore.optimize` (the HNSW + quantized index: `index_build_s`), then the collection's
  size on disk;
- query: a new process opens the collection, runs `--queries` top-10 searches (clustered query
  vectors from another seed) unfiltered and filtered (`label=dog`, the request `run_search`
  sends), and reports p50/p99, recall@10 against exact (numpy brute force over the same
  vectors) and RSS: `rss_mb` is the whole process, `store_rss_mb` what opening and searching
  the collection added to it.

Settings: `none` (exact float32 in RAM), `int8` and `binary` (quantized codes in RAM, original
vectors on disk, rescored with oversampling; StorageOptions defaults). Append `-ram` / `-disk`
to choose where the originals live (`int8-ram`). Each record is merged into
bench/results/scale.json (keyed by points, quantization, on_disk) as soon as it is measured, so a
long 1M run that is stopped keeps what finished.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.peers import load as load_avg
from bench.search import DIM, RESULTS, Corpus

NAME = "scale"
QUERY_SEED = 4242


def parse_setting(text: str) -> tuple[str, bool]:
    quantization, _, place = text.partition("-")
    on_disk = quantization != "none" if not place else place == "disk"
    return quantization, on_disk


def point_id(index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"bench-{index}"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def storage_for(quantization: str, on_disk: bool):
    from pixseek.store.options import StorageOptions

    return StorageOptions(quantization=quantization, on_disk=on_disk).validated()


# -- subprocess: build -----------------------------------------------------------------------


def build_main(args: argparse.Namespace) -> None:
    from pixseek.store.edge import EdgeStore

    quantization, on_disk = parse_setting(args.setting)
    work = Path(args.work)
    store = EdgeStore(work / "collections")
    name = f"p{args.points}-{args.setting}"
    store.drop_collection(name)
    store.create_collection(
        name, {"clip": DIM}, {"bench": NAME}, storage_for(quantization, on_disk)
    )
    vectors_path = work / f"vectors-{args.points}.f32"
    keep = not vectors_path.exists()  # the first build keeps the vectors for the exact truth
    saved = np.memmap(vectors_path, np.float32, "w+", shape=(args.points, DIM)) if keep else None
    upsert_s = 0.0
    for start, points in zip(
        range(0, args.points, 1000), Corpus(args.points).chunks(), strict=True
    ):
        if saved is not None:
            saved[start : start + len(points)] = np.stack([p.vectors["clip"] for p in points])
        began = time.perf_counter()
        store.upsert(name, points)
        upsert_s += time.perf_counter() - began
    if saved is not None:
        saved.flush()
    began = time.perf_counter()
    status = store.optimize(name)
    index_build_s = time.perf_counter() - began
    store.close()
    out = {
        "upsert_pts_s": round(args.points / upsert_s, 1),
        "upsert_s": round(upsert_s, 1),
        "index_build_s": round(index_build_s, 1),
        "indexed_vectors": status.indexed_vectors,
        "segments": status.segments,
        "disk_mb": round(dir_mb(work / "collections" / name), 1),
        "build_rss_mb": round(rss_mb(), 1),
    }
    print(json.dumps(out))


# -- subprocess: query -----------------------------------------------------------------------


def exact_top10(work: Path, points: int, queries: np.ndarray) -> list[list[str]]:
    cache = work / f"truth-{points}-{len(queries)}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    data = np.memmap(work / f"vectors-{points}.f32", np.float32, "r", shape=(points, DIM))
    best_scores = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 10), dtype=np.int64)
    for start in range(0, points, 100_000):
        scores = queries @ np.asarray(data[start : start + 100_000]).T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], 1)
        merged_ids = np.concatenate([best_ids, top + start], 1)
        order = np.argsort(-merged_scores, axis=1)[:, :10]
        best_scores = np.take_along_axis(merged_scores, order, 1)
        best_ids = np.take_along_axis(merged_ids, order, 1)
    truth = [[point_id(int(i)) for i in row] for row in best_ids]
    cache.write_text(json.dumps(truth))
    return truth


def query_main(args: argparse.Namespace) -> None:
    from pixseek.search.filters import compile_filters

    from pixseek.store.base import Nearest, SearchRequest
    from pixseek.store.edge import EdgeStore

    work = Path(args.work)
    corpus = Corpus(args.queries, seed=QUERY_SEED)
    queries = corpus.vectors(args.queries).astype(np.float32)
    truth = exact_top10(work, args.points, queries)
    flt = compile_filters(["label=dog"], "where")
    name = f"p{args.points}-{args.setting}"
    before = rss_mb()
    store = EdgeStore(work / "collections")
    store.search(name, SearchRequest(Nearest(queries[0]), limit=10))  # open + warm
    unfiltered, filtered, recalls = [], [], []
    for query, expected in zip(queries, truth, strict=True):
        began = time.perf_counter()
        hits = store.search(name, SearchRequest(Nearest(query), limit=10))
        unfiltered.append(time.perf_counter() - began)
        recalls.append(len({h.id for h in hits} & set(expected)) / 10)
        began = time.perf_counter()
        store.search(name, SearchRequest(Nearest(query), limit=10, filter=flt))
        filtered.append(time.perf_counter() - began)
    after = rss_mb()
    ms = lambda xs, q: round(float(np.percentile(np.asarray(xs) * 1000, q)), 2)  # noqa: E731
    print(
        json.dumps(
            {
                "p50_ms": ms(unfiltered, 50),
                "p99_ms": ms(unfiltered, 99),
                "filtered_p50_ms": ms(filtered, 50),
                "filtered_p99_ms": ms(filtered, 99),
                "recall_at_10": round(float(np.mean(recalls)), 4),
                "rss_mb": round(after, 1),
                "store_rss_mb": round(after - before, 1),
            }
        )
    )


# -- driver ----------------------------------------------------------------------------------


def child(mode: str, points: int, setting: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.scale", mode, "--points", str(points)]
    command += ["--setting", setting, "--work", args.work, "--queries", str(args.queries)]
    if args.query_lock and mode == "build":  # builds soak up idle time at the lowest priority
        command = ["nice", "-n", "19", *command]
    with _query_lock(args.query_lock if mode == "query" else None):
        done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _query_lock(path: str | None) -> Iterator[None]:
    """Latencies are timed while this lock is held: other benchmarks on the machine take the
    same lock (`flock PATH ...`), so a 1M build can share the machine but a query phase
    never runs beside another benchmark."""
    if not path:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge(record: dict[str, Any]) -> list[dict[str, Any]]:
    path = RESULTS / f"{NAME}.json"
    records = json.loads(path.read_text()) if path.exists() else []
    key = (record["points"], record["quantization"], record["on_disk"])
    records = [r for r in records if (r["points"], r["quantization"], r["on_disk"]) != key]
    records.append(record)
    records.sort(key=lambda r: (r["points"], r["quantization"] != "none", r["quantization"]))
    path.write_text(json.dumps(records, indent=2) + "\n")
    (RESULTS / f"{NAME}.md").write_text(markdown(records))
    return records


def markdown(records: list[dict[str, Any]]) -> str:
    lines = [
        "# bench/scale: large collections on the embedded store (Qdrant Edge)",
        "",
        "`python -m bench.scale`: synthetic 512-d clustered unit vectors with ingest-shaped "
        "payloads; top-10 queries; recall@10 against exact brute force. int8/binary keep "
        "quantized codes in RAM and rescore candidates with the original vectors "
        "(oversampling x2 int8; binary: x4 with 1-bit queries in the first run, x8 with 8-bit queries after). `store_rss_mb` is what opening and searching the "
        "collection added to the process; load is the 1-minute load average at the start "
        "and end of each record (2 cores, shared with other work: latencies are noisy).",
        "",
        "| points | quantization | on disk | upsert pts/s | index build s | RSS MB (store) "
        "| disk MB | p50 ms | p99 ms | filtered p50 ms | recall@10 | load |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['points']:,} | {r['quantization']} | {'yes' if r['on_disk'] else 'no'} "
            f"| {r['upsert_pts_s']:,.0f} | {r['index_build_s']} "
            f"| {r['rss_mb']:.0f} ({r['store_rss_mb']:.0f}) | {r['disk_mb']:.0f} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['filtered_p50_ms']} | {r['recall_at_10']} "
            f"| {r['load'][0]} -> {r['load'][1]} |"
        )
    lines += ["", *goals(records), ""]
    notes = RESULTS / f"{NAME}-notes.md"  # what the records cannot say (runs that did not finish)
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    return "\n".join(lines)


def goals(records: list[dict[str, Any]]) -> list[str]:
    out = ["## Goals (int8)", ""]
    for points in sorted({r["points"] for r in records}):
        by = {r["quantization"]: r for r in records if r["points"] == points}
        int8, exact = by.get("int8"), by.get("none")
        if int8 is None:
            continue
        line = (
            f"- {points:,} points: int8 p50 {int8['p50_ms']} ms (goal <= 10: "
            f"{'met' if int8['p50_ms'] <= 10 else 'NOT met'}), recall@10 {int8['recall_at_10']} "
            f"(goal >= 0.95: {'met' if int8['recall_at_10'] >= 0.95 else 'NOT met'})"
        )
        if exact is not None and exact["store_rss_mb"] > 0:
            share = int8["store_rss_mb"] / exact["store_rss_mb"]
            line += f", store RSS {share:.0%} of float32's (goal <= 40%: "
            line += f"{'met' if share <= 0.4 else 'NOT met'})"
        out.append(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "build", "query"])
    parser.add_argument("--points", type=int, nargs="+", default=[100_000])
    parser.add_argument("--settings", default="none,int8,binary")
    parser.add_argument("--setting", default="none")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--query-lock",
        help="time queries only while holding this flock (builds run at nice 19 meanwhile)",
    )
    parser.add_argument(
        "--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "pixseek-scale")
    )
    args = parser.parse_args()
    if args.mode != "run":
        args.points = args.points[0]
        (build_main if args.mode == "build" else query_main)(args)
        return
    Path(args.work).mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for points in args.points:
        for setting in args.settings.split(","):
            quantization, on_disk = parse_setting(setting)
            start_load = load_avg()[0]
            record: dict[str, Any] = {"points": points, "quantization": quantization}
            record["on_disk"] = on_disk
            record.update(child("build", points, setting, args))
            record.update(child("query", points, setting, args))
            record["load"] = [start_load, load_avg()[0]]
            record["cpus"] = os.cpu_count()
            merge(record)
            print(json.dumps(record), flush=True)
            subprocess.run(
                ["rm", "-rf", str(Path(args.work) / "collections" / f"p{points}-{setting}")]
            )


if __name__ == "__main__":
    main()
