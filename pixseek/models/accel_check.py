"""Measure every inference setting on your own weights and images: fidelity to fp32, and speed.

`evaluate(clip, pixels, queries)` builds each back-end x precision from one loaded model, embeds
the same images with each, compares them with eager fp32 (min / mean cosine, top-10 overlap for
image->image and text->image retrieval), then times them in interleaved rounds and reports each
as a ratio to eager fp32 within the same round (robust to a machine whose load changes). The
default setting is the fastest whose min cosine is >= FIDELITY_MIN_COSINE. bench/accel.py runs
this on a random ViT-B-32 (`python -m bench.accel`).
"""

from __future__ import annotations

import json as _json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pixseek.errors import first_line
from pixseek.models import accel

if TYPE_CHECKING:
    from pixseek.models.clip import ClipEmbedder


@dataclass(frozen=True)
class Setting:
    backend: str
    precision: str
    threads: int = 0
    channels_last: bool = False

    @property
    def label(self) -> str:
        extra = f" threads={self.threads}" if self.threads else ""
        return f"{self.backend} {self.precision}{' channels-last' if self.channels_last else ''}{extra}"


def candidate_settings(device: torch.device, include_compile: bool = True) -> list[Setting]:
    """Every supported setting on this device (plus thread and memory-format variants)."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    found: list[Setting] = []
    for (backend, on), precisions in accel.SUPPORTED.items():
        if on != kind or (backend == "compile" and not include_compile):
            continue
        if backend == "onnx" and not accel.onnxruntime_available():
            continue
        found.extend(Setting(backend, precision) for precision in precisions)
    if kind == "cpu":
        found.append(Setting("eager", "fp32", channels_last=True))
        found.append(Setting("eager", "fp32", threads=1))
        if accel.onnxruntime_available():
            found.append(Setting("onnx", "int8", threads=1))
    reference = Setting("eager", "fp16" if kind == "cuda" else "fp32")
    return [reference] + [s for s in found if s != reference]


def _with_threads(run: accel.Runner, threads: int) -> accel.Runner:
    """torch's intra-op thread count is process-wide: set it around each call, then restore."""
    if not threads:
        return run

    def wrapped(pixels: torch.Tensor) -> torch.Tensor:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run(pixels)
        finally:
            torch.set_num_threads(before)

    return wrapped


def build(clip: ClipEmbedder, setting: Setting) -> tuple[accel.Runner, float]:
    spec = replace(
        clip.spec,
        backend=setting.backend,
        precision=setting.precision,
        threads=setting.threads,
        channels_last=setting.channels_last,
    )
    resolved = accel.Resolved(setting.backend, setting.precision, guarded=False)
    started = time.perf_counter()
    run = accel.build_runner(clip.model.visual, resolved, spec, clip.device, clip.fingerprint)
    return _with_threads(run, setting.threads), time.perf_counter() - started


def embed(run: accel.Runner, pixels: torch.Tensor, batch: int) -> np.ndarray:
    parts = [run(pixels[i : i + batch]).float().numpy() for i in range(0, len(pixels), batch)]
    return np.concatenate(parts)


def evaluate(
    clip: ClipEmbedder,
    pixels: torch.Tensor,
    queries: np.ndarray,
    settings: list[Setting],
    rounds: int = 5,
    batch: int = 32,
    timed_batches: int = 4,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Fidelity and speed of each setting; the first setting is the reference (eager fp32)."""
    runners: dict[Setting, accel.Runner] = {}
    results: dict[Setting, dict[str, Any]] = {}
    reference: np.ndarray | None = None
    for setting in settings:
        try:
            run, build_s = build(clip, setting)
            first = time.perf_counter()
            run(pixels[:batch])  # compiles / warms up
            warm_s = time.perf_counter() - first
            vectors = embed(run, pixels, batch)
        except Exception as exc:  # one unavailable setting must not stop the sweep
            results[setting] = {"setting": setting.label, "error": first_line(exc)[:200]}
            log(f"{setting.label}: unavailable ({results[setting]['error']})")
            continue
        reference = vectors if reference is None else reference
        fid = accel.fidelity(reference, vectors, k=10)
        text = accel.topk_overlap(reference, vectors, queries, k=10)
        runners[setting] = run
        results[setting] = {
            "setting": setting.label,
            "backend": setting.backend,
            "precision": setting.precision,
            "threads": setting.threads or torch.get_num_threads(),
            "channels_last": setting.channels_last,
            "variant": bool(setting.threads or setting.channels_last),
            "build_s": round(build_s, 2),
            "first_batch_s": round(warm_s, 2),
            "min_cosine": round(fid.min_cosine, 5),
            "mean_cosine": round(fid.mean_cosine, 5),
            "top10_overlap_image": round(fid.topk_overlap, 4),
            "top10_overlap_text": round(text, 4),
            "faithful": fid.passes(),
            "ips": [],
            "ratio": [],
        }
        log(f"{setting.label}: built in {build_s:.1f}s, min cosine {fid.min_cosine:.5f}")
    timed = pixels[: batch * timed_batches]
    order = list(runners)
    for r in range(rounds):
        shift = r % len(order)
        rates: dict[Setting, float] = {}
        for setting in order[shift:] + order[:shift]:
            started = time.perf_counter()
            embed(runners[setting], timed, batch)
            rates[setting] = len(timed) / (time.perf_counter() - started)
        base = rates[order[0]]
        for setting, rate in rates.items():
            results[setting]["ips"].append(round(rate, 2))
            results[setting]["ratio"].append(round(rate / base, 3))
        log(f"round {r}: " + ", ".join(f"{s.label} {rates[s]:.1f}/s" for s in order))
    best_reference = max(results[order[0]]["ips"]) if order else 1.0
    for setting in order:
        row = results[setting]
        row["median_ips"] = round(statistics.median(row["ips"]), 2)
        row["median_ratio"] = round(statistics.median(row["ratio"]), 3)
        # Best of the rounds: the least disturbed by other processes on a shared machine.
        row["best_ips"] = round(max(row["ips"]), 2)
        row["best_ratio"] = round(max(row["ips"]) / best_reference, 3)
    return list(results.values())


def choose_default(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest setting with min cosine >= the threshold (library thread default only)."""
    eligible = [r for r in results if "error" not in r and r["faithful"] and not r["variant"]]
    return max(eligible, key=lambda r: r["median_ratio"], default=None)


def preprocess_cpu_ms(preprocess: Any, images: list[Any]) -> dict[str, float]:
    """CPU ms per image of open_clip's transform and of pixseek's (same tensors), per torch
    intra-op thread count: decode threads run it next to the model's threads."""
    costs = {}
    for label, fn in (("open_clip", preprocess.transform), ("pixseek", preprocess)):
        for threads in sorted({1, torch.get_num_threads()}):
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            started = time.process_time()
            for image in images:
                fn(image)
            spent = time.process_time() - started
            torch.set_num_threads(before)
            costs[f"{label} (torch threads={threads})"] = round(1000 * spent / len(images), 3)
    return costs


def markdown(report: dict[str, Any]) -> str:
    """The sweep report (bench/accel.py) as a Markdown page."""
    lines = [
        "# Inference settings (bench/accel.py)",
        "",
        f"{report['what']}. {report['model']}, {report['check_images']} Imagenette val images, "
        f"batch {report['batch_size']}, {report['rounds']} interleaved speed rounds; speed is the "
        "median of per-round ratios to eager fp32. Criterion: "
        f"{report['criterion']}.",
        "",
        f"**Chosen default: {report['chosen_default']}** (`auto` resolves to "
        f"{report['auto_resolves_to']} on this machine)",
        "",
        "| setting | speed vs fp32 (median of rounds) | best-round speed vs fp32 | images/s "
        "median / best | min cos | mean cos | top-10 img | top-10 text | build s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["settings"]:
        if "error" in r:
            lines.append(f"| {r['setting']} | unavailable: {r['error']} | | | | | | | |")
            continue
        lines.append(
            f"| {r['setting']} | {r['median_ratio']}x | {r['best_ratio']}x | {r['median_ips']} / "
            f"{r['best_ips']} | {r['min_cosine']} | "
            f"{r['mean_cosine']} | {r['top10_overlap_image']} | {r['top10_overlap_text']} | "
            f"{r['build_s']} |"
        )
    lines += [
        "",
        f"- preprocess CPU ms/image: {_json.dumps(report['preprocess_cpu_ms_per_image'])}",
        f"- load average at the end: {report['load_avg_end']}",
        f"- machine: {_json.dumps(report['machine'])}",
    ]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in report.get("notes", [])]
    return "\n".join(lines) + "\n"
