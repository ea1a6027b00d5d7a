"""pixseek ingest vs clip-retrieval inference, side by side (bench/accel.py sweeps the settings).

    .venv/bin/python -m bench.peers [--rounds 3] [--limit N]   # -> results/peers.*

Side by side: both tools embed the same Imagenette val folder (3,925 JPEGs) with the same
random-weight ViT-B-32 checkpoint at batch 32. clip-retrieval runs from its own venv (built once
under ~/.cache/pixseek-peers from PyPI, `open-clip-torch<3`, `setuptools<81`; it shares this
venv's torch build through a .pth file, so both sides run the same torch/MKL/oneDNN). Per round,
in alternating order: `clip-retrieval inference`, and `pixseek ingest` (default settings) between
two pure model-forward runs of pixseek's setting on preprocessed tensors (separate processes, same
settings). Steady state is each tool's own loop timing (clip-retrieval: stats/0.json sample_count
/ total_duration; pixseek: added / seconds from --json); whole command is wall-clock including
interpreter start-up and model load. Ratios are taken within a round.

"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import REPO, RESULTS, load

IMAGENETTE = REPO.parent / "shared" / "datasets" / "imagenette" / "val"
PEER_HOME = Path(os.environ.get("PIXSEEK_PEERS_HOME", "~/.cache/pixseek-peers")).expanduser()
PEER_REQUIREMENTS = ["clip-retrieval==2.45.0", "open-clip-torch<3", "setuptools<81"]
CLASSES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}


def machine() -> dict[str, Any]:
    import torch

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in flags.splitlines() if "model name" in ln), ""
    )
    info = {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    info["cpu_flags"] = [f for f in ("avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


# -- the clip-retrieval venv ----------------------------------------------------------------------


def peer_venv() -> Path:
    venv = PEER_HOME / "venv"
    marker = venv / ".pixseek-ready"
    if marker.is_file() and json.loads(marker.read_text()) == PEER_REQUIREMENTS:
        return venv / "bin"
    print(f"building the clip-retrieval venv in {venv} (once)", file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    peer = venv / "bin" / "python"
    purelib = subprocess.run(
        [peer, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Last on sys.path: the peer's own packages (numpy<2, open-clip<3) win; torch comes from here.
    Path(purelib, "zz-pixseek-shared-torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [peer, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *PEER_REQUIREMENTS], check=True)
    marker.write_text(json.dumps(PEER_REQUIREMENTS))
    return venv / "bin"


# -- one run of each side -------------------------------------------------------------------------


def run_clip_retrieval(bin_dir: Path, source: Path, out: Path, weights: Path, batch: int) -> dict:
    cmd = [str(bin_dir / "clip-retrieval"), "inference", "--input_dataset", str(source)]
    cmd += ["--output_folder", str(out), "--input_format", "files", "--batch_size", str(batch)]
    cmd += ["--num_prepro_workers", "2", "--enable_text", "False", "--enable_metadata", "False"]
    cmd += ["--clip_model", f"open_clip:ViT-B-32/{weights}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    before, started = load(), time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    whole = time.perf_counter() - started
    stats = json.loads((out / "stats" / "0.json").read_text())
    return rates(
        stats["sample_count"], stats["total_duration"], stats["inference_duration"], whole, before
    )


def run_pixseek(source: Path, collection: str, env: dict[str, str], batch: int) -> dict:
    cmd = [sys.executable, "-m", "pixseek", "ingest", str(source), "-c", collection, "--json"]
    before, started = load(), time.perf_counter()
    done = subprocess.run(
        [*cmd, "--batch-size", str(batch)], env=env, capture_output=True, text=True, check=True
    )
    whole = time.perf_counter() - started
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return rates(summary["added"], summary["seconds"], summary["model_seconds"], whole, before)


def rates(images: int, loop_s: float, model_s: float, whole_s: float, load_before: list) -> dict:
    """One run of either tool: its own loop time (steady), model-only time and wall time."""
    return {
        "images": images,
        "steady_ips": images / loop_s,
        "whole_ips": images / whole_s,
        "model_ips": images / model_s,
        "whole_s": whole_s,
        "load_before": load_before,
    }


def run_forward(env: dict[str, str], images: int, batch: int) -> dict:
    cmd = [sys.executable, "-m", "bench.peers", "forward", "--images", str(images)]
    before = load()
    done = subprocess.run(
        [*cmd, "--batch-size", str(batch)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load_before": before}


def forward_main(args: argparse.Namespace) -> None:
    """Child process: the model alone, on preprocessed batches, with pixseek's settings."""
    import torch
    from PIL import Image

    from pixseek.config import load_settings
    from pixseek.models.bundle import load_image_embedders

    clip = load_image_embedders(load_settings()).clip
    paths = sorted(IMAGENETTE.glob("*/*.JPEG"))
    paths = paths[:: max(1, len(paths) // args.images)][: args.images]
    tensors = [clip.preprocess(Image.open(p).convert("RGB")) for p in paths]
    size = args.batch_size
    batches = [torch.stack(tensors[i : i + size]) for i in range(0, len(tensors), size)]
    clip.embed_pixels(batches[0])  # warm-up
    started = time.perf_counter()
    for batch in batches:
        clip.embed_pixels(batch)
    rate = len(tensors) / (time.perf_counter() - started)
    print(json.dumps({"images": len(tensors), "forward_ips": rate, "setting": clip.describe()}))


# -- side by side ---------------------------------------------------------------------------------


def peers_main(args: argparse.Namespace) -> None:
    from pixseek.models.random_weights import write_random_clip

    bin_dir = peer_venv()
    work = Path(tempfile.mkdtemp(prefix="pixseek-peers-"))
    model_dir = write_random_clip(work / "model", "ViT-B-32", seed=0)
    weights = model_dir / "open_clip_model.safetensors"
    source, warm = IMAGENETTE, work / "warm"
    paths = sorted(IMAGENETTE.glob("*/*.JPEG"))
    warm.mkdir()
    for path in paths[:: len(paths) // 64][:64]:
        (warm / path.name).symlink_to(path)
    if args.limit:
        source = work / "subset"
        source.mkdir()
        for path in paths[:: max(1, len(paths) // args.limit)][: args.limit]:
            (source / path.name).symlink_to(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")}
    env.update(HF_HUB_OFFLINE="1", PIXSEEK_DATA_DIR=str(work / "data"))
    env.update(PIXSEEK_CLIP_MODEL=f"local-dir:{model_dir}", PYTHONPATH=str(REPO))
    for key in ("PIXSEEK_BACKEND", "PIXSEEK_PRECISION", "PIXSEEK_THREADS"):
        if key in os.environ and args.keep_settings:
            env[key] = os.environ[key]

    # Not counted: cold start of each side (pixseek exports + verifies its ONNX graph here).
    cold = run_pixseek(warm, "warm", env, args.batch_size)
    run_clip_retrieval(bin_dir, warm, work / "cr-warm", weights, args.batch_size)
    rounds = []
    for r in range(args.rounds):
        # pixseek's ingest sits between two forward runs (their mean is its reference, so slow
        # drift in machine load cancels); clip-retrieval goes first in even rounds, last in odd.
        order = ["clip-retrieval", "pixseek"] if r % 2 == 0 else ["pixseek", "clip-retrieval"]
        row: dict[str, Any] = {"order": order}
        for side in order:
            if side == "clip-retrieval":
                out = work / f"cr-{r}"
                row[side] = run_clip_retrieval(bin_dir, source, out, weights, args.batch_size)
                continue
            before = run_forward(env, args.forward_images, args.batch_size)
            row[side] = run_pixseek(source, f"round{r}", env, args.batch_size)
            after = run_forward(env, args.forward_images, args.batch_size)
            rates = [before["forward_ips"], after["forward_ips"]]
            row["forward"] = {**after, "forward_ips": sum(rates) / 2, "before_after": rates}
        pix, peer, fwd = row["pixseek"], row["clip-retrieval"], row["forward"]
        row["steady_ratio"] = pix["steady_ips"] / peer["steady_ips"]
        row["whole_ratio"] = pix["whole_ips"] / peer["whole_ips"]
        row["ingest_over_forward"] = pix["steady_ips"] / fwd["forward_ips"]
        rounds.append(row)
        print(json.dumps({k: row[k] for k in row if k.endswith("ratio") or k == "forward"}))
    same = same_model_check(model_dir, source, work / "cr-0")
    report = summarise(args, rounds, cold, same)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "peers.md").write_text(peers_markdown(report))
    print(peers_markdown(report))


def same_model_check(model_dir: Path, source: Path, cr_out: Path, n: int = 64) -> dict:
    """Both tools embed the same images alike: cosine of clip-retrieval's vectors to pixseek's."""
    import numpy as np
    from PIL import Image

    from pixseek.models import accel
    from pixseek.models.clip import load_clip

    keys = sorted(p.relative_to(source).as_posix() for p in source.glob("**/*.JPEG"))[:n]
    peer = np.load(next((cr_out / "img_emb").glob("*.npy")))[:n]
    images = [Image.open(source / key).convert("RGB") for key in keys]
    found = {}
    for precision, backend in (("fp32", "eager"), ("auto", "auto")):
        clip = load_clip(f"local-dir:{model_dir}", "", "cpu", backend=backend, precision=precision)
        low, mean = accel.cosine_stats(peer, clip.embed_images(images))
        found[f"{clip.backend} {clip.precision}"] = {"min_cosine": low, "mean_cosine": mean}
    return {"images": n, "clip_retrieval_vs_pixseek": found}


def _median(rounds: list[dict], *path: str) -> float:
    values = []
    for row in rounds:
        value: Any = row
        for key in path:
            value = value[key]
        values.append(value)
    return round(statistics.median(values), 3)


def summarise(args: argparse.Namespace, rounds: list[dict], cold: dict, same: dict) -> dict:
    return {
        "what": "pixseek ingest vs clip-retrieval inference, same random ViT-B-32, same images",
        "images": rounds[0]["pixseek"]["images"],
        "batch_size": args.batch_size,
        "rounds": len(rounds),
        "setting": rounds[0]["forward"]["setting"],
        "median": {
            "steady_ratio": _median(rounds, "steady_ratio"),
            "whole_ratio": _median(rounds, "whole_ratio"),
            "ingest_over_forward": _median(rounds, "ingest_over_forward"),
            "pixseek_steady_ips": _median(rounds, "pixseek", "steady_ips"),
            "pixseek_whole_ips": _median(rounds, "pixseek", "whole_ips"),
            "clip_retrieval_steady_ips": _median(rounds, "clip-retrieval", "steady_ips"),
            "clip_retrieval_whole_ips": _median(rounds, "clip-retrieval", "whole_ips"),
            "clip_retrieval_model_ips": _median(rounds, "clip-retrieval", "model_ips"),
            "forward_ips": _median(rounds, "forward", "forward_ips"),
        },
        "targets": {"steady_ratio": ">= 1.3", "ingest_over_forward": ">= 0.9"},
        "cold_first_pixseek_run": {"images": cold["images"], "whole_s": round(cold["whole_s"], 1)},
        "same_model": same,
        "machine": machine(),
        "rounds_detail": rounds,
    }


def peers_markdown(report: dict) -> str:
    m = report["median"]
    lines = [
        "# pixseek ingest vs clip-retrieval (bench/peers.py)",
        "",
        f"{report['what']}; {report['images']} Imagenette val images, batch "
        f"{report['batch_size']}, {report['rounds']} interleaved rounds (medians; ratios taken "
        f"within a round). pixseek setting: {report['setting']}.",
        "",
        "| | images/s steady | images/s whole command |",
        "|---|---|---|",
        f"| pixseek ingest | {m['pixseek_steady_ips']} | {m['pixseek_whole_ips']} |",
        f"| clip-retrieval inference | {m['clip_retrieval_steady_ips']} | "
        f"{m['clip_retrieval_whole_ips']} |",
        f"| **ratio** | **{m['steady_ratio']}x** | **{m['whole_ratio']}x** |",
        "",
        f"- pure model forward, same setting, same rounds: {m['forward_ips']} images/s; "
        f"ingest / forward = **{m['ingest_over_forward']}** (target >= 0.9)",
        f"- clip-retrieval's own inference-only rate: {m['clip_retrieval_model_ips']} images/s",
        f"- first pixseek run on a cold cache (ONNX export + fp32 check), 64 images: "
        f"{report['cold_first_pixseek_run']['whole_s']} s whole command (not in the rounds)",
        f"- same model on both sides: {json.dumps(report['same_model'])}",
        f"- machine: {json.dumps(report['machine'])}",
        "",
        "| round | order | steady ratio | whole ratio | ingest/forward (forward before/after, "
        "img/s) | load avg before each |",
        "|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(report["rounds_detail"]):
        loads = ", ".join(f"{side}: {row[side]['load_before'][0]}" for side in row["order"])
        fwd = "/".join(f"{x:.1f}" for x in row["forward"]["before_after"])
        lines.append(
            f"| {i} | {' > '.join(row['order'])} | {row['steady_ratio']:.2f} | "
            f"{row['whole_ratio']:.2f} | {row['ingest_over_forward']:.3f} ({fwd}) | {loads} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="peers", choices=["peers", "forward"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="use N images instead of all")
    parser.add_argument("--images", type=int, default=640, help="forward mode: images to time")
    parser.add_argument("--forward-images", type=int, default=640)
    parser.add_argument(
        "--keep-settings", action="store_true", help="pass PIXSEEK_BACKEND/PRECISION/THREADS"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.mode == "forward":
        forward_main(args)
    else:
        peers_main(args)


if __name__ == "__main__":
    main()
