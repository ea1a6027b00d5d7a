"""The inference-settings sweep: every back-end x precision of the CLIP image tower, side by side.

    .venv/bin/python -m bench.accel [--rounds 7] [--out accel]   # -> results/accel.*

One process, one random-weight ViT-B-32, every setting built from it; fidelity of each against
eager fp32 on 256 Imagenette images (min and mean cosine, top-10 overlap image->image and for the
10 class names text->image), then speed in interleaved rounds as ratios to eager fp32. The
fastest setting with min cosine >= 0.99 is what `auto` should resolve to on this kind of machine.

    .venv/bin/python -m bench.accel --select [--out accel-select]

runs what `auto` does on first use instead (pixseek.models.accel_select: its candidates for this
CPU's flags, measured on the first 32 Imagenette images) and records the decision with its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench.peers import CLASSES, IMAGENETTE, RESULTS, load, machine


def settings_main(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image

    from pixseek.models import accel, accel_check
    from pixseek.models.clip import load_clip
    from pixseek.models.random_weights import write_random_clip

    work = Path(tempfile.mkdtemp(prefix="pixseek-accel-"))
    model_dir = write_random_clip(work / "model", "ViT-B-32", seed=0)
    clip = load_clip(
        f"local-dir:{model_dir}",
        "",
        "cpu",
        backend="eager",
        precision="fp32",
        threads=0,
        channels_last=False,
        cache_dir=work / "cache",
    )
    paths = sorted(IMAGENETTE.glob("*/*.JPEG"))
    paths = paths[:: len(paths) // args.check_images][: args.check_images]
    images = [Image.open(p).convert("RGB") for p in paths]
    pixels = torch.stack([clip.preprocess(image) for image in images])
    queries = clip.embed_texts([f"a photo of a {name}." for name in CLASSES.values()])
    preprocess_cost = accel_check.preprocess_cpu_ms(clip.preprocess, images[:128])
    settings = accel_check.candidate_settings(clip.device, include_compile=not args.no_compile)
    results = accel_check.evaluate(
        clip,
        pixels,
        queries,
        settings,
        rounds=args.rounds,
        batch=args.batch_size,
        log=lambda line: print(line, f"(load {load()[0]})", file=sys.stderr, flush=True),
    )
    chosen = accel_check.choose_default(results)
    auto = accel.resolve(accel.AccelSpec(), clip.device)
    report_machine = machine()
    report = {
        "what": "inference settings for the CLIP image tower: fidelity to eager fp32 and speed",
        "model": "ViT-B-32, random weights (seed 0)",
        "check_images": len(images),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "criterion": f"min cosine to fp32 over the check set >= {accel.FIDELITY_MIN_COSINE}",
        "chosen_default": chosen and chosen["setting"],
        "auto_resolves_to": f"{auto.backend} {auto.precision}",
        "preprocess_cpu_ms_per_image": preprocess_cost,
        "load_avg_end": load(),
        "machine": report_machine,
        "notes": SETTINGS_NOTES + machine_notes(report_machine),
        "settings": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(accel_check.markdown(report))
    print(accel_check.markdown(report))


def select_main(args: argparse.Namespace) -> None:
    import time

    from PIL import Image

    from pixseek.models.accel_select import TIMED_IMAGES
    from pixseek.models.clip import load_clip
    from pixseek.models.random_weights import write_random_clip

    work = Path(tempfile.mkdtemp(prefix="pixseek-select-"))
    model_dir = write_random_clip(work / "model", "ViT-B-32", seed=0)
    clip = load_clip(
        f"local-dir:{model_dir}",
        "",
        "cpu",
        backend="auto",
        precision="auto",
        threads=0,
        channels_last=False,
        cache_dir=work / "cache",
    )
    paths = sorted(IMAGENETTE.glob("*/*.JPEG"))
    images = [Image.open(p).convert("RGB") for p in paths[:: len(paths) // 32][:32]]
    load_before = load()
    started = time.perf_counter()
    clip.embed_images(images)  # the first batch: measures, then embeds with the choice
    first_s = time.perf_counter() - started
    decision = clip.decision
    assert decision is not None, "auto x auto on CPU should have measured"
    key = decision.key
    lines = [
        "# What `auto` chose on this machine (bench/accel.py --select)",
        "",
        f"pixseek.models.accel_select on a random ViT-B-32 (seed 0), first batch of {len(images)} "
        f"Imagenette val images (fidelity set {decision.images} images: the first 24 real ones), "
        f"batch of {TIMED_IMAGES} images timed in 2 interleaved rounds (best round).",
        "",
        f"**Chosen: {decision.chosen.label}**; measurement {decision.seconds:.1f} s, first batch "
        f"{first_s:.1f} s in all (including the ONNX export).",
        "",
        "| candidate | images/s | min cos | mean cos | top-10 overlap | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in decision.candidates:
        verdict = "**chosen**" if c.setting == decision.chosen.label else c.rejected
        lines.append(
            f"| {c.setting} | {c.images_per_s} | {c.min_cosine} | {c.mean_cosine} | "
            f"{c.top10_overlap} | {verdict} |"
        )
    lines += [
        "",
        f"- CPU: {key.cpu_model}; inference flags: {', '.join(key.cpu_flags) or 'none'} "
        f"(no VNNI / AMX / AVX512-BF16 means no bf16 candidate); {key.cores} cores, "
        f"{key.threads} torch threads; torch {key.torch}, onnxruntime {key.onnxruntime}",
        f"- load average before / after: {load_before} / {load()} (2 cores shared with other "
        "agents: absolute images/s move with the neighbours' load)",
        f"- decision key {key.digest}, measured {decision.measured_at}",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{args.out}.json").write_text(json.dumps(decision.to_json(), indent=2) + "\n")
    print("\n".join(lines))


SETTINGS_NOTES = [
    "Random weights: trained CLIP towers have outlier activations that per-tensor dynamic int8 "
    "quantisation handles worse than these Gaussian-initialised ones, so trained-weight int8 "
    "fidelity may well be lower than measured here. That is why `auto` does not trust this "
    "table: it re-checks its lossy choice against fp32 on the first 8 real images it embeds with "
    "the actual weights and falls back to fp32 below 0.99 min cosine (verdict cached per model).",
    "int8 quantises activations per batch, so an image's vector depends slightly on its batch "
    "companions (cosine >= 0.999 between batch contexts in the tests).",
    "top-10 text->image overlap uses 10 class-name queries against the check set: with random "
    "weights the text queries are nearly equidistant from all images, so near-ties reorder "
    "easily; image->image overlap (256 queries) is the steadier retrieval measure.",
    "Text queries always run through the PyTorch text tower (fp32 on CPU).",
    "The machine is shared (2 cores, other test suites running): a setting's speed moves with "
    "the neighbours' load, hence interleaved rounds, ratios within a round, and best-of-rounds.",
]


def machine_notes(info: dict) -> list[str]:
    flags = info.get("cpu_flags", [])
    notes = []
    if "avx512_vnni" not in flags:
        notes.append("No VNNI on this CPU: int8 matmuls run without dot-product instructions.")
    if "avx512_bf16" in flags and "amx_bf16" not in flags:
        notes.append("This CPU has avx512_bf16 but no AMX: bf16 runs on oneDNN without tiles.")
    elif "avx512_bf16" not in flags:
        notes.append("No native bf16 on this CPU: bf16 is emulated, so expect it to be slow.")
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--check-images", type=int, default=256, help="fidelity set size")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--select", action="store_true", help="run auto's measured choice")
    parser.add_argument("--out", default=None, help="results file name, without suffix")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out = args.out or ("accel-select" if args.select else "accel")
    (select_main if args.select else settings_main)(args)


if __name__ == "__main__":
    main()
