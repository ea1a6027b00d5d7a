"""Generative search, stage by stage: pipeline load, generation, embedding, search.

    .venv/bin/python -m bench.generate                       # tiny pipeline on CPU (CI-sized)
    .venv/bin/python -m bench.generate --mode real           # SD-Turbo and SD 1.5 on a GPU
    .venv/bin/python -m bench.generate --mode real --allow-cpu --size 128   # smoke run on a CPU

tiny: a tiny random Stable Diffusion and a tiny random CLIP, COCO mini (239 images) ingested into
the embedded store, then real jobs through `worker.job.run_job` (the code path of the worker and
of `search --generate`): cold (pipeline load), warm, fully cached, by number of images, by fusion.
Results: bench/results/generate.json/.md.

real: the real SD-Turbo (Stable Diffusion 2.1-base) and SD 1.5 architectures with random weights
(same FLOPs and memory as the trained models; images are noise), fp16 with the worker's memory
savers on CUDA, the ViT-B-32 CLIP architecture for embedding, and the fused Qdrant query over
10,000 random 512-d points. Results: bench/results/generate-real.json/.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._common import REPO, RESULTS

COCO = REPO.parent / "shared" / "datasets" / "coco_mini"
STAGES = ("load", "generation", "embedding", "search", "total")
# (architecture, steps, guidance): SD-Turbo's own settings (1-4 steps, no guidance) and a usual
# SD 1.5 setting (25 steps with classifier-free guidance, which doubles the UNet batch).
REAL_RUNS = [("sd-turbo", 1, 0.0), ("sd-turbo", 4, 0.0), ("sd15", 25, 7.5)]


def machine() -> dict[str, Any]:
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "note": "CPU timings on a shared machine: other processes' load is in load_average",
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def median_stages(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in STAGES if any(k in r for r in runs)]
    return {k: round(statistics.median(r.get(k, 0.0) for r in runs), 4) for k in keys}


# -- tiny ------------------------------------------------------------------------------------


def run_tiny(args: argparse.Namespace) -> dict[str, Any]:
    from pixseek.ingest.labels import load_labels
    from pixseek.ingest.pipeline import IngestOptions, run_ingest
    from pixseek.worker.job import run_job
    from pixseek.worker.spec import JobSpec

    from pixseek.config import load_settings
    from pixseek.models.bundle import load_image_embedders
    from pixseek.models.random_weights import write_random_clip, write_random_t2i
    from pixseek.store import open_store

    work = Path(tempfile.mkdtemp(prefix="pixseek-bench-generate-"))
    clip_dir = write_random_clip(work / "clip", "tiny")
    t2i_dir = write_random_t2i(work / "t2i", "tiny")
    os.environ.update(
        {
            "PIXSEEK_DATA_DIR": str(work / "data"),
            "PIXSEEK_CLIP_MODEL": f"local-dir:{clip_dir}",
            "PIXSEEK_T2I_MODEL": str(t2i_dir),
            "PIXSEEK_T2I_SIZE": str(args.size or 64),
            "PIXSEEK_T2I_STEPS": str(args.steps or 4),
            "PIXSEEK_DEVICE": "cpu",
        }
    )
    settings = load_settings()
    options = IngestOptions(collection="coco", labels=load_labels(COCO / "labels.jsonl"))
    summary = run_ingest(open_store(settings), load_image_embedders(settings), [str(COCO)], options)
    base = JobSpec("a dog sleeping on a couch", "coco", n_images=args.images, limit=10)

    def job(spec: JobSpec) -> dict[str, float]:
        return run_job(settings, spec, str(uuid.uuid4()))["timings"]

    cold = job(replace(base, seed=10_000))
    warm = [job(replace(base, seed=100 * (i + 1))) for i in range(args.repeats)]
    cached = [job(replace(base, seed=100)) for _ in range(args.repeats)]
    by_images = {
        n: median_stages([job(replace(base, n_images=n, seed=1000 * n + i)) for i in range(3)])
        for n in (1, 4, 8)
    }
    by_fusion = {
        fusion: median_stages(
            [job(replace(base, fusion=fusion, seed=100)) for _ in range(args.repeats)]
        )
        for fusion in ("text", "generated", "text+mean", "weighted", "rrf")
    }
    return {
        "mode": "tiny",
        "what": "tiny random Stable Diffusion + tiny random CLIP on CPU, through worker.job.run_job",
        "collection_points": summary.added,
        "images_per_job": args.images,
        "size": int(os.environ["PIXSEEK_T2I_SIZE"]),
        "steps": int(os.environ["PIXSEEK_T2I_STEPS"]),
        "repeats": args.repeats,
        "seconds": {
            "cold_first_job": cold,
            "warm_median": median_stages(warm),
            "cached_median": median_stages(cached),
            "by_images_warm_median": by_images,
            "by_fusion_cached_median": by_fusion,
        },
        **machine(),
    }


# -- real architectures ----------------------------------------------------------------------


def synthetic_store(work: Path, points: int, dim: int) -> Any:
    from pixseek.store.base import PointRecord
    from pixseek.store.edge import EdgeStore

    store = EdgeStore(work / "store")
    store.create_collection("bench", {"clip": dim}, {})
    rng = np.random.default_rng(0)
    for start in range(0, points, 1000):
        vectors = rng.normal(size=(min(1000, points - start), dim)).astype(np.float32)
        store.upsert(
            "bench",
            [PointRecord(str(uuid.uuid4()), {"clip": v}, {"labels": ["x"]}) for v in vectors],
        )
    return store


def timed(function, repeats: int) -> tuple[float, Any]:
    """Median wall seconds of `repeats` calls after one warm-up call; returns the last output."""
    output = function()
    seconds = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        output = function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), output


def time_architecture(
    arch: str, steps: int, guidance: float, size: int, clip: Any, store: Any, args: Any
) -> dict[str, Any]:
    from pixseek.search.fusion import fuse

    from pixseek.models.device import pick_dtype
    from pixseek.models.random_weights import random_t2i_pipeline
    from pixseek.models.t2i import GenerationParams, wrap_pipeline
    from pixseek.store.base import SearchRequest

    device = clip.device
    started = time.perf_counter()
    pipeline = random_t2i_pipeline(arch, device=str(device) if device.type == "cuda" else "cpu")
    pipeline.to(dtype=pick_dtype(device))
    t2i = wrap_pipeline(pipeline, f"random:{arch}", device)
    build = time.perf_counter() - started
    params = GenerationParams("a dog sleeping on a couch", "", steps, guidance, size, size)
    seeds = list(range(args.images))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    generation, generated = timed(lambda: t2i.generate(params, seeds), args.repeats)
    pictures = [g.image for g in generated]
    embedding, vectors = timed(lambda: clip.embed_images(pictures), args.repeats)
    text = clip.embed_texts(["a photo of a dog sleeping on a couch."])[0]
    plan = fuse("rrf", text, {"clip": vectors})
    search, _ = timed(lambda: store.search("bench", SearchRequest(plan, 10)), args.repeats)
    text_plan = fuse("text", text, {})
    search_text, _ = timed(lambda: store.search("bench", SearchRequest(text_plan, 10)), 10)
    run = {
        "arch": arch,
        "steps": steps,
        "guidance": guidance,
        "size": size,
        "images": len(seeds),
        "build_random_pipeline_s": round(build, 2),
        "generation_s": round(generation, 4),
        "generation_per_image_s": round(generation / len(seeds), 4),
        "embedding_s": round(embedding, 4),
        "search_rrf_s": round(search, 5),
        "search_text_s": round(search_text, 5),
        "prefetches": len(plan.searches),
    }
    if device.type == "cuda":
        run["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.empty_cache()
    return run


def run_real(args: argparse.Namespace) -> dict[str, Any]:
    from pixseek.models.clip import load_clip
    from pixseek.models.device import pick_device, pick_dtype
    from pixseek.models.random_weights import write_random_clip

    device = pick_device(args.device)
    if device.type != "cuda" and not args.allow_cpu:
        raise SystemExit(
            "no CUDA GPU: --mode real times SD-Turbo / SD 1.5 on a GPU; "
            "add --allow-cpu (with a small --size) for a smoke run on this CPU"
        )
    size = args.size or 512
    work = Path(tempfile.mkdtemp(prefix="pixseek-bench-real-"))
    clip = load_clip(f"local-dir:{write_random_clip(work / 'clip', 'ViT-B-32')}", "", str(device))
    store = synthetic_store(work, args.points, clip.dim)
    wanted = args.arch.split(",") if args.arch else [arch for arch, _, _ in REAL_RUNS]
    plan = {(a, args.steps or steps, g): None for a, steps, g in REAL_RUNS if a in wanted}
    runs = []
    for arch, steps, guidance in plan:
        run = time_architecture(arch, steps, guidance, size, clip, store, args)
        runs.append(run)
        print(json.dumps(run), flush=True)
    return {
        "mode": "real",
        "what": "real SD architectures with random weights (same FLOPs), ViT-B-32 CLIP, "
        f"RRF over 1 + n prefetches on {args.points} random points (Qdrant Edge)",
        "device": str(device),
        "dtype": str(pick_dtype(device)),
        "repeats": args.repeats,
        "runs": runs,
        **machine(),
    }


def write(result: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Generative search timings (bench/generate.py, mode {result['mode']})", ""]
    for key, value in result.items():
        if key == "seconds":
            lines += ["", "| scenario | " + " | ".join(STAGES) + " |", "|---" * 6 + "|"]
            for scenario, stages in value.items():
                nested = not any(stage in stages for stage in STAGES)
                rows = [(f"{scenario}: {k}", v) for k, v in stages.items()] if nested else []
                for label, row in rows or [(scenario, stages)]:
                    cells = " | ".join(f"{row.get(s, 0.0):.4f}" for s in STAGES)
                    lines.append(f"| {label} | {cells} |")
            lines.append("")
        elif key == "runs":
            columns = list(value[0]) if value else []
            lines += ["", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
            lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in value]
            lines.append("")
        else:
            lines.append(f"- {key}: {value}")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--images", type=int, default=4, help="images per job")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, help="pixels (tiny: 64, real: 512)")
    parser.add_argument("--steps", type=int, help="override the steps of every run")
    parser.add_argument("--arch", help="real: comma-separated subset of sd-turbo,sd15")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--points", type=int, default=10_000, help="real: points to search")
    parser.add_argument("--allow-cpu", action="store_true", help="real: run without a GPU")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", help="results name (default generate / generate-real)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run_tiny(args) if args.mode == "tiny" else run_real(args)
    name = args.out or ("generate" if args.mode == "tiny" else "generate-real")
    write(result, name)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
