"""Command-line start-up: a text search without torch, next to `import torch`, at 10k and 100k.

    .venv/bin/python -m bench.cli [--points 10000 100000] [--runs 5] [--fidelity-queries 1000]

A random-weight ViT-B-32 (local-dir layout) and collections of N random 512-d points with
ingest-shaped payloads (bench.profile_search.populate) in the embedded store. A child process
loads the model with torch, exports the text tower to ONNX (what the first text query of a
process does) and measures its fidelity to torch over varied queries: min / mean cosine, and the
top-10 overlap of exact search results against the 10k collection, fp32 and int8. Then, in
interleaved rounds (so a change in machine load hits every row alike), whole processes are timed:
`python -c pass`, `python -c "import torch"`, `pixseek --help`, `pixseek collections`,
`pixseek search TEXT -c NAME --json` with a query never seen before (the ONNX text tower runs),
the same query again (on-disk query cache), and the torch text path (PIXSEEK_TEXT_BACKEND=torch,
the previous behaviour). Then the same searches and `pixseek collections` while a `pixseek serve`
holds the data dir (the commands delegate the store's calls to it). Medians of the rounds.
Results: bench/results/cli.json / .md.
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
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import REPO, cpu, load, write_results
from bench.profile_search import THINGS, WORDS, populate

ADJECTIVES = ["striped", "foggy", "crowded", "empty", "golden", "frozen", "ancient", "neon"]


def varied_queries(n: int, seed: int = 0) -> list[str]:
    """Short, long, unicode, emoji and punctuation-heavy queries for the fidelity check."""
    rng = np.random.default_rng(seed)
    extras = ["🐶", "café", "東京", "C++", "it's", "&amp;", "—", "100%", "#tag", "naïve", "北极熊"]
    out = []
    for i in range(n):
        words = [str(rng.choice(WORDS + ADJECTIVES)) for _ in range(int(rng.integers(0, 4)))]
        words += [str(rng.choice(THINGS))]
        if i % 3 == 0:
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(extras)))
        if i % 100 == 0:
            words = words * 30  # longer than the context: truncated
        text = " ".join(words)
        out.append(text if i % 7 else f"a photo of a {text}.")
    return out


def collection_vectors(n: int, dim: int) -> np.ndarray:
    """The vectors populate(store, name, n, ...) stored (same generator, same order)."""
    rng = np.random.default_rng(n)
    parts = []
    for start in range(0, n, 1000):
        block = rng.normal(size=(min(1000, n - start), dim)).astype(np.float32)
        parts.append(block / np.linalg.norm(block, axis=1, keepdims=True))
    return np.concatenate(parts)


def top10_overlap(reference: np.ndarray, candidate: np.ndarray, points: np.ndarray) -> float:
    ref = np.argsort(-(reference @ points.T), axis=1)[:, :10]
    cand = np.argsort(-(candidate @ points.T), axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref, cand, strict=True)]))


def child(args: argparse.Namespace) -> None:
    """In one process: collections, the text tower export (timed) and its fidelity."""
    from pixseek.search.text_encoder import query_encoder

    from pixseek.config import load_settings
    from pixseek.models.clip import load_clip
    from pixseek.models.text_export import export_text_tower
    from pixseek.store import open_store

    settings = load_settings()
    clip = load_clip(settings.clip_model, settings.clip_pretrained, settings.device)
    report: dict[str, Any] = {"collections": {}, "fidelity": {}}
    started = time.perf_counter()
    encoder = query_encoder(settings)
    encoder.export_now = True  # as the CLI: export before answering
    encoder.encode_text("warm-up")  # no export yet: loads torch, exports, verifies
    report["export_on_first_text_query_s"] = round(time.perf_counter() - started, 1)
    store = open_store(settings)
    for n in args.points:
        upsert = populate(store, f"p{n}", n, encoder.identifier, encoder.dim)
        report["collections"][f"p{n}"] = {"points": n, "upsert_s": round(upsert, 1)}
    store.close()
    # Sorted by length, so each batch of 64 is padded to about its own length (not 77).
    queries = sorted(varied_queries(args.fidelity_queries), key=len)
    reference = np.concatenate(
        [clip.embed_texts(queries[i : i + 64]) for i in range(0, len(queries), 64)]
    )
    points = collection_vectors(min(args.points), encoder.dim)
    for precision in ("fp32", "int8"):
        started = time.perf_counter()
        tower = export_text_tower(
            clip,
            settings.clip_model,
            settings.clip_pretrained,
            settings.cache_dir,
            precision,
            settings.threads,
        )
        built = time.perf_counter() - started
        if tower is None:  # failed its check: measure the untrusted graph anyway
            from pixseek.models.text_tower import OnnxTextTower, manifest_path, read_manifest

            path = manifest_path(
                settings.cache_dir, settings.clip_model, settings.clip_pretrained, precision
            )
            manifest = read_manifest(path)
            tower = OnnxTextTower(manifest, settings.cache_dir / manifest.graph)
        got = np.concatenate(
            [tower.embed_texts(queries[i : i + 64]) for i in range(0, len(queries), 64)]
        )
        cosine = np.sum(reference * got, axis=1)
        report["fidelity"][precision] = {
            "queries": len(queries),
            "min_cosine": round(float(cosine.min()), 7),
            "mean_cosine": round(float(cosine.mean()), 7),
            "top10_overlap_10k": round(top10_overlap(reference, got, points), 4),
            "trusted": tower.manifest.trusted,
            "export_s": round(built, 1),
            "graph_mb": round(graph_bytes(settings.cache_dir / tower.manifest.graph) / 2**20, 1),
        }
    Path(args.child).write_text(json.dumps(report))


def graph_bytes(graph: Path) -> int:
    """The graph file and its external weights file, when it has one."""
    data = graph.with_name(graph.name + ".data")
    return graph.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def wall(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-400:]}")
    return time.perf_counter() - started


def cli_rounds(env: dict[str, str], points: list[int], runs: int, torch_runs: int) -> dict:
    py = sys.executable
    pixseek = [py, "-m", "pixseek"]
    torch_env = {**env, "PIXSEEK_TEXT_BACKEND": "torch", "PIXSEEK_QUERY_CACHE_ENTRIES": "0"}
    samples: dict[str, list[float]] = defaultdict(list)
    # A new query must be new to the on-disk cache of a reused --work directory too.
    run_id = f"{int(time.time()) % 100_000}"
    for r in range(runs):
        samples["python -c pass"].append(wall([py, "-c", "pass"], env))
        samples['python -c "import torch"'].append(wall([py, "-c", "import torch"], env))
        samples['python -c "import qdrant_client"'].append(
            wall([py, "-c", "import qdrant_client"], env)
        )
        samples["pixseek --help"].append(wall([*pixseek, "--help"], env))
        samples["pixseek collections"].append(wall([*pixseek, "collections"], env))
        for n in points:
            text = (
                f"{ADJECTIVES[r % 8]} {WORDS[r % 10]} {THINGS[(r * 3) % 10]} round {r} {run_id} {n}"
            )
            query = [*pixseek, "search", text, "-c", f"p{n}", "--json"]
            samples[f"pixseek search TEXT -c p{n} (new query: ONNX text tower)"].append(
                wall(query, env)
            )
            samples[f"pixseek search TEXT -c p{n} (repeated: disk cache)"].append(wall(query, env))
        if r < torch_runs:
            text = f"torch path {WORDS[r % 10]} {THINGS[r % 10]} {run_id}"
            query = [*pixseek, "search", text, "-c", f"p{points[0]}", "--json"]
            samples[f"pixseek search TEXT -c p{points[0]} (torch text path, before)"].append(
                wall(query, torch_env)
            )
    return summarise(samples)


def summarise(samples: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "median_s": round(statistics.median(values), 3),
            "min_s": round(min(values), 3),
            "max_s": round(max(values), 3),
            "runs": len(values),
        }
        for name, values in samples.items()
    }


def served_rounds(env: dict[str, str], points: list[int], runs: int) -> dict:
    """The same commands while a `pixseek serve` holds the data dir: the CLI finds it and sends
    the store's calls there (the server has every collection open), encoding text itself."""
    from bench.text_batching import free_port, serve, wait_ready

    port = free_port()
    process = serve(env, port)
    pixseek = [sys.executable, "-m", "pixseek"]
    samples: dict[str, list[float]] = defaultdict(list)
    run_id = f"served {int(time.time()) % 100_000}"
    try:
        for n in points:  # up, model loaded, each collection opened by the server
            wait_ready(f"http://127.0.0.1:{port}", f"p{n}", process)
        for r in range(runs):
            samples["pixseek collections (serve running)"].append(
                wall([*pixseek, "collections"], env)
            )
            for n in points:
                text = f"{ADJECTIVES[r % 8]} {THINGS[(r * 7) % 10]} {run_id} {r} {n}"
                query = [*pixseek, "search", text, "-c", f"p{n}", "--json"]
                samples[f"pixseek search TEXT -c p{n} (serve running: new query)"].append(
                    wall(query, env)
                )
                samples[f"pixseek search TEXT -c p{n} (serve running: repeated)"].append(
                    wall(query, env)
                )
    finally:
        process.terminate()
        process.wait(timeout=60)
    return summarise(samples)


def prepare(work: Path) -> dict[str, str]:
    """The random ViT-B-32 and the environment every process of the benchmark uses."""
    from pixseek.models.random_weights import write_random_clip

    model = work / "model"
    if not (model / "open_clip_model.safetensors").is_file():
        write_random_clip(model, "ViT-B-32", seed=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")}
    env.update(HF_HUB_OFFLINE="1", PIXSEEK_DATA_DIR=str(work / "data"))
    env["PIXSEEK_CLIP_MODEL"] = f"local-dir:{model}"
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torch-runs", type=int, default=3)
    parser.add_argument("--fidelity-queries", type=int, default=1000)
    parser.add_argument("--work", type=Path, help="reuse this work directory (model, data)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="pixseek-bench-cli-"))
    work.mkdir(parents=True, exist_ok=True)
    env = prepare(work)
    report: dict[str, Any] = {"machine": cpu(), "load_start": load(), "work": str(work)}
    out = work / "child.json"
    if not (args.work and out.is_file()):  # --work with a finished child: reuse its part
        cmd = [sys.executable, "-m", "bench.cli", "--child", str(out)]
        cmd += ["--fidelity-queries", str(args.fidelity_queries)]
        cmd += ["--points", *map(str, args.points)]
        subprocess.run(cmd, env=env, cwd=REPO, check=True)
    report.update(json.loads(out.read_text()))
    report["commands"] = cli_rounds(env, args.points, args.runs, args.torch_runs)
    report["commands"].update(served_rounds(env, args.points, args.runs))
    report["load_end"] = load()
    torch_s = report["commands"]['python -c "import torch"']["median_s"]
    for row in report["commands"].values():
        row["vs_import_torch"] = round(row["median_s"] / torch_s, 3)
    write_results("cli", report, markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Command-line start-up (bench/cli.py)",
        "",
        "Whole processes, wall time, median of interleaved rounds; random-weight ViT-B-32, "
        "embedded Qdrant Edge store with random 512-d points. "
        f"Machine: {report['machine']['cpu']} ({report['machine']['cpus']} CPUs, shared); "
        f"load average {report['load_start']} -> {report['load_end']}.",
        "",
        "| command | median s | min s | max s | runs | x `import torch` |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["commands"].items():
        lines.append(
            f"| {name} | {row['median_s']} | {row['min_s']} | {row['max_s']} | {row['runs']} | "
            f"{row['vs_import_torch']} |"
        )
    lines += [
        "",
        "First text query of a fresh data directory (exports and verifies the text tower; "
        f"model already loaded): {report['export_on_first_text_query_s']} s, once.",
        "",
        "## Fidelity of the ONNX text tower to torch fp32",
        "",
        "| precision | queries | min cosine | mean cosine | top-10 overlap (10k points) | "
        "used (passes) | export s | graph MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for precision, row in report["fidelity"].items():
        lines.append(
            f"| {precision} | {row['queries']} | {row['min_cosine']} | {row['mean_cosine']} | "
            f"{row['top10_overlap_10k']} | {row['trusted']} | {row['export_s']} | "
            f"{row['graph_mb']} |"
        )
    if report.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
