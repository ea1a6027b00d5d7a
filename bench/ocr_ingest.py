"""Ingest images/s without --ocr: this checkout against another one (the code before the keyword
index), in the same run, rounds interleaved and alternating which goes first.

    git worktree add /tmp/ocr-base <commit>
    .venv/bin/python -m bench.ocr_ingest --base /tmp/ocr-base [--images DIR] [--rounds 4]

Both run `pixseek ingest DIR -c NAME --json` in a fresh process on a fresh data folder, with this
venv's packages and the same random-weight CLIP ViT-B-32 (no real weights offline) on the eager backend (auto
would measure its candidates anew in every fresh data folder); the other
checkout's modules are loaded in place of this one's by pointing the editable install at it. The
rate is the CLI's own images/s (from the first image to the last write, model load excluded).
Writes `ingest_without_ocr` into bench/results/ocr.json (bench/ocr.py's report shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._common import RESULTS, load

REPO = Path(__file__).resolve().parents[1]
# Run pixseek's CLI with the editable install's package map moved to another checkout.
RUNNER = (
    "import sys, __editable___pixseek_0_1_0_finder as f;"
    "root = sys.argv.pop(1);"
    "f.MAPPING.update({k: v.replace(f.MAPPING['pixseek'][:-len('/pixseek')], root)"
    " for k, v in f.MAPPING.items()});"
    "from pixseek.cli import main; main()"
)


def _commit(checkout: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


def _ingest(checkout: Path, images: Path, data: Path, model: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")}
    env |= {"PIXSEEK_DATA_DIR": str(data), "PIXSEEK_CLIP_MODEL": model, "HF_HUB_OFFLINE": "1"}
    env["PIXSEEK_BACKEND"] = "eager"  # not auto: its first-use measurement, per data folder
    command = [sys.executable, "-c", RUNNER, str(checkout), "ingest", str(images), "-c", "r"]
    done = subprocess.run(
        [*command, "--json"], env=env, capture_output=True, text=True, check=False, cwd=checkout
    )
    if done.returncode != 0:
        raise SystemExit(f"ingest in {checkout} failed: {done.stderr.strip()[-400:]}")
    return float(json.loads(done.stdout)["images_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="the other checkout")
    parser.add_argument("--images", type=Path, default=Path("/tmp/pixseek-ocr-set/images"))
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    from pixseek.models.random_weights import write_random_clip

    work = Path(tempfile.mkdtemp(prefix="pixseek-ocr-ingest-"))
    model = f"local-dir:{write_random_clip(work / 'model', 'ViT-B-32')}"
    runs = {"base": args.base.resolve(), "this": REPO}
    for name, checkout in runs.items():  # warm-up: ONNX export / caches of each checkout
        _ingest(checkout, args.images, work / f"warm-{name}", model)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    loads = [load()]
    for round_ in range(args.rounds):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in order:
            rates[name].append(_ingest(runs[name], args.images, work / f"{name}-{round_}", model))
        loads.append(load())
        print("round", round_, {k: v[-1] for k, v in rates.items()}, flush=True)
    mean = {k: statistics.mean(v) for k, v in rates.items()}
    result = {
        "images": sum(1 for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")),
        "base_commit": _commit(args.base),
        "this_commit": _commit(REPO) + " + working tree",
        "rounds": rates,
        "mean": {k: round(v, 2) for k, v in mean.items()},
        "ratio_of_means": round(mean["this"] / mean["base"], 3),
        "ratio_of_best": round(max(rates["this"]) / max(rates["base"]), 3),
        "load_per_round": loads,
    }
    print(json.dumps(result))
    path = RESULTS / "ocr.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**previous, "ingest_without_ocr": result}, indent=2))


if __name__ == "__main__":
    main()
