"""Ingest throughput vs pure model forward, in one run, on Imagenette val (3,925 images).

    .venv/bin/python -m bench.ingest [--arch ViT-B-32] [--batch-size 32] [--limit N]

The model has the real architecture with random weights (same FLOPs as the trained one). The
pure-forward rate is measured on preprocessed tensors before and after the ingest (their mean is
the reference), so both numbers see the same machine load. Results: bench/results/ingest.json/.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from bench._common import REPO, RESULTS

IMAGENETTE = REPO.parent / "shared" / "datasets" / "imagenette"


def forward_rate(embedders, images: list[Path], batch_size: int) -> float:
    """Images/s of the model alone on already decoded and preprocessed batches."""
    tensors = [embedders.clip.preprocess(Image.open(p).convert("RGB")) for p in images]
    batches = [torch.stack(tensors[i : i + batch_size]) for i in range(0, len(tensors), batch_size)]
    embedders.clip.embed_pixels(batches[0])  # warm-up
    started = time.perf_counter()
    for batch in batches:
        embedders.clip.embed_pixels(batch)
    return len(tensors) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="ingest only the first N images")
    parser.add_argument("--forward-images", type=int, default=640)
    args = parser.parse_args()

    from pixseek.ingest.pipeline import IngestOptions, run_ingest

    from pixseek.config import load_settings
    from pixseek.models.bundle import load_image_embedders
    from pixseek.models.random_weights import write_random_clip
    from pixseek.store.edge import EdgeStore

    work = Path(tempfile.mkdtemp(prefix="pixseek-bench-"))
    model_dir = write_random_clip(work / "model", args.arch)
    os.environ["PIXSEEK_CLIP_MODEL"] = f"local-dir:{model_dir}"
    settings = load_settings()
    embedders = load_image_embedders(settings)

    images = sorted((IMAGENETTE / "val").glob("*/*.JPEG"))
    source = IMAGENETTE / "val"
    if args.limit:
        source = work / "subset"
        source.mkdir()
        for image in images[: args.limit]:
            (source / image.name).symlink_to(image)
    sample = images[:: max(1, len(images) // args.forward_images)][: args.forward_images]

    forward_before = forward_rate(embedders, sample, args.batch_size)
    store = EdgeStore(work / "store")
    options = IngestOptions(
        collection="bench",
        batch_size=args.batch_size,
        decode_workers=settings.decode_workers,
    )
    summary = run_ingest(store, embedders, [str(source)], options)
    forward_after = forward_rate(embedders, sample, args.batch_size)

    forward = (forward_before + forward_after) / 2
    ingest_rate = summary.added / summary.seconds
    result = {
        "arch": args.arch,
        "weights": "random (same FLOPs as trained)",
        "batch_size": args.batch_size,
        "images": summary.added,
        "failed": len(summary.failed),
        "ingest_seconds": round(summary.seconds, 2),
        "ingest_images_per_s": round(ingest_rate, 2),
        "model_seconds_inside_ingest": round(summary.model_seconds, 2),
        "forward_images_per_s_before": round(forward_before, 2),
        "forward_images_per_s_after": round(forward_after, 2),
        "forward_images_per_s": round(forward, 2),
        "ingest_over_forward": round(ingest_rate / forward, 3),
        "target": "ingest_over_forward >= 0.9",
        "torch_threads": torch.get_num_threads(),
        "decode_workers": settings.decode_workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "ingest.md").write_text(
        "# Ingest throughput (bench/ingest.py)\n\n"
        + "\n".join(f"- {key}: {value}" for key, value in result.items())
        + "\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
