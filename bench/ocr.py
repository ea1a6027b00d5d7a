"""OCR quality and cost, and keyword / dense / hybrid retrieval, on photos with rendered text.

    .venv/bin/python -m bench.ocr [--set /tmp/pixseek-ocr-set] [--images 120] [--part all|ocr|search]

The set comes from bench/ocr_set.py (built when missing). Part `ocr`: every engine reads every
image; a ground-truth word counts as found when it is one of the image's recognised tokens
(lower-case letters and digits), precision is the share of recognised tokens that are rendered
words (the photos' own text, e.g. shop signs, counts against it), broken down by text size,
word length, contrast, rotation, occlusion and whether the strokes stand out from the photo
(bench/ocr_set.py's `visible`: a low-contrast ink on a busy photo vanishes into parts of it);
ms per image on one ONNX/OMP thread. Engines: pixseek's RapidOCR pipeline, pixseek's settings
before it (RapidOCR's own pipeline, one detection at 1x), RapidOCR as shipped, and Tesseract on
the whole photo (psm 11 sparse text, psm 3 automatic) when `tesseract` is installed. Part `search`:
ingests the set with and without OCR (images/s, interleaved) and runs one query per rendered
word and per two-word phrase in keyword, dense and hybrid mode (R@1, R@5). The CLIP model has
random weights (no real weights offline), so `dense` is chance level and `hybrid` shows what
fusing with a useless dense ranking costs. Results: bench/results/ocr.json and ocr.md.
Ingest without --ocr against the code before the keyword index: bench/ocr_ingest.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image

from bench._common import RESULTS, cpu, load
from bench.ocr_set import INK_MODES, build

TOKEN = re.compile(r"[a-z0-9]+")
VISIBLE = 0.9  # a word's strokes count as visible when this share stands out from the photo
TARGET = "target: 4+ letters, >= 20 px, not occluded"
TARGET_VISIBLE = "target, strokes visible (>= 90% of stroke pixels 20+ grey levels off the photo)"


def tokens(text: str) -> set[str]:
    return set(TOKEN.findall(text.lower()))


def load_set(path: Path, n_images: int, ink: str) -> dict:
    if not (path / "truth.json").is_file():
        build(path, n_images, 0, ink)
    return json.loads((path / "truth.json").read_text())


# -- engines -------------------------------------------------------------------------------------


def rapidocr_reader(max_side: int):
    from pixseek.ingest.ocr import RapidOcrEngine

    engine = RapidOcrEngine(threads=1, max_side=max_side)
    return lambda path: engine.read(Image.open(path)).text


def rapidocr_call_reader(**options: Any):
    """RapidOCR's own pipeline (`RapidOCR.__call__`) with these options, on one thread (the
    global thread counts: RapidOCR copies them over any det_/rec_ ones)."""
    import numpy as np
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, **options)

    def read(path: Path) -> str:
        raw, _ = engine(np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1])
        return "\n".join(text for _, text, _ in raw or [])

    return read


def tesseract_reader(psm: int):
    if shutil.which("tesseract") is None:
        return None
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def read(path: Path) -> str:
        done = subprocess.run(
            ["tesseract", str(path), "-", "--psm", str(psm), "-l", "eng"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        return done.stdout

    return read


def engines() -> dict[str, Any]:
    found = {
        "rapidocr pixseek (2 scales, space decoding)": rapidocr_reader(1600),
        # pixseek's settings before: one detection at 1x, RapidOCR's own decoding.
        "rapidocr pixseek before": rapidocr_call_reader(
            det_limit_type="max", det_limit_side_len=1600, det_unclip_ratio=2.0, text_score=0.5
        ),
        # as shipped: the short side upscaled to 736 px before detection
        "rapidocr as shipped": rapidocr_call_reader(),
        "tesseract 5 psm 11": tesseract_reader(11),
        "tesseract 5 psm 3": tesseract_reader(3),
    }
    return {name: reader for name, reader in found.items() if reader is not None}


# -- OCR quality ---------------------------------------------------------------------------------


def word_rows(truth: dict) -> list[dict]:
    """One row per rendered word, with the conditions it was rendered under."""
    rows = []
    for record in truth["images"]:
        for item in record["items"]:
            for index, word in enumerate(item["words"]):
                rows.append(
                    {
                        "image": record["filename"],
                        "word": word,
                        "size": item["size"],
                        "long": len(word) >= 4,
                        "low_contrast": item["low_contrast"],
                        "rotated": abs(item["rotation"]) > 8,
                        "occluded": item["occluded"] and index == len(item["words"]) - 1,
                        # share of stroke pixels 20+ grey levels from the photo under them
                        "visible": item.get("visible", 1.0) >= VISIBLE,
                    }
                )
    return rows


def in_target(row: dict) -> bool:
    return row["long"] and row["size"] >= 20 and not row["occluded"]


def buckets(rows: list[dict], hit: dict[tuple[str, str], bool]) -> dict[str, dict]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        found = hit[(row["image"], row["word"])]
        groups["all"].append(found)
        groups[f"size {row['size']} px"].append(found)
        groups["4+ letters" if row["long"] else "3 letters"].append(found)
        groups["low contrast" if row["low_contrast"] else "high contrast"].append(found)
        groups["rotated > 8 deg" if row["rotated"] else "rotated <= 8 deg"].append(found)
        groups["occluded word" if row["occluded"] else "not occluded"].append(found)
        groups["strokes visible" if row["visible"] else "strokes partly hidden"].append(found)
        if in_target(row):
            groups[TARGET].append(found)
            if row["visible"]:
                groups[TARGET_VISIBLE].append(found)
    return {k: {"n": len(v), "recall": round(sum(v) / len(v), 3)} for k, v in groups.items()}


def ocr_quality(set_dir: Path, truth: dict) -> dict:
    rows = word_rows(truth)
    results = {}
    for name, read in engines().items():
        read(set_dir / "images" / truth["images"][0]["filename"])  # warm-up (model load)
        hit: dict[tuple[str, str], bool] = {}
        times, recognised, correct = [], 0, 0
        for record in truth["images"]:
            started = time.perf_counter()
            text = read(set_dir / "images" / record["filename"])
            times.append(time.perf_counter() - started)
            found = tokens(text)
            rendered = {w for item in record["items"] for w in item["words"]}
            recognised += len(found)
            correct += len(found & rendered)
            for word in rendered:
                hit[(record["filename"], word)] = word in found
        results[name] = {
            "word_recall": buckets(rows, hit),
            "precision": round(correct / recognised, 3) if recognised else 0.0,
            "ms_per_image_median": round(1000 * statistics.median(times), 1),
            "ms_per_image_mean": round(1000 * statistics.mean(times), 1),
        }
        print(name, results[name]["word_recall"]["all"], results[name]["precision"], flush=True)
    return results


# -- report --------------------------------------------------------------------------------------


def write_report(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ocr.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# OCR and keyword search (bench/ocr.py)",
        "",
        f"{result['images']} COCO photos with {result['words']} rendered words "
        f"(fonts: {', '.join(result['fonts'])}); {result['machine']}; load {result['load']}.",
        "",
        f"Ink: `{result.get('ink', 'box-mean')}` (bench/ocr_set.py). "
        + (
            "Every word's strokes stand out from the photo under them (>= 90% of stroke "
            "pixels 20+ grey levels off); low contrast is about 45 grey levels. The first "
            "set's results (`box-mean` ink, parts of 35 target words invisible) are in "
            "ocr-box-mean.md."
            if result.get("ink") == "legible"
            else "One ink against the mean of the text's box: parts of some words vanish."
        ),
        "",
    ]
    quality = result.get("ocr")
    if quality:
        names = list(quality)
        lines += [
            "## OCR word recall by condition",
            "",
            "| condition | n | " + " | ".join(names) + " |",
        ]
        lines.append("|---|---|" + "---|" * len(names))
        for key, value in quality[names[0]]["word_recall"].items():
            cells = [f"{quality[n]['word_recall'][key]['recall']:.3f}" for n in names]
            lines.append(f"| {key} | {value['n']} | " + " | ".join(cells) + " |")
        lines.append(
            "| precision (photo text counts as wrong) | | "
            + " | ".join(f"{quality[n]['precision']:.3f}" for n in names)
            + " |"
        )
        lines.append(
            "| ms per image (median, 1 ONNX/OMP thread) | | "
            + " | ".join(f"{quality[n]['ms_per_image_median']:.0f}" for n in names)
            + " |"
        )
        lines.append("")
    search = result.get("search")
    if search:
        lines += search_markdown(search)
    ingest = result.get("ingest_without_ocr")
    if ingest:
        lines += ingest_markdown(ingest)
    lines += [f"- {note}" for note in result.get("notes", [])]
    (RESULTS / "ocr.md").write_text("\n".join(lines) + "\n")


def search_markdown(search: dict) -> list[str]:
    lines = ["## Retrieval (one relevant image per query)", ""]
    lines.append("| queries | n | mode | R@1 | R@5 |")
    lines.append("|---|---|---|---|---|")
    for group, modes in search["retrieval"].items():
        for mode, value in modes.items():
            lines.append(
                f"| {group} | {value['n']} | {mode} | {value['r1']:.3f} | {value['r5']:.3f} |"
            )
    ingest = search["ingest"]
    lines += [
        "",
        "## Ingest images/s (same run, interleaved rounds)",
        "",
        "| run | images/s per round | best |",
        "|---|---|---|",
    ]
    for name, rates in ingest["rounds"].items():
        lines.append(f"| {name} | {', '.join(f'{r:.2f}' for r in rates)} | {max(rates):.2f} |")
    lines += ["", *[f"- {note}" for note in search.get("notes", [])], ""]
    return lines


def ingest_markdown(ingest: dict) -> list[str]:
    """bench/ocr_ingest.py's measurement: ingest without --ocr, this checkout vs the base."""
    lines = [
        "## Ingest without --ocr: before the keyword index vs now (bench/ocr_ingest.py)",
        "",
        f"{ingest['images']} images, CLI `pixseek ingest --json` in fresh processes, rounds "
        f"interleaved; base {ingest['base_commit']}, this {ingest['this_commit']}; load per "
        f"round {ingest['load_per_round']}.",
        "",
        "| run | images/s per round | mean |",
        "|---|---|---|",
    ]
    for name, rates in ingest["rounds"].items():
        lines.append(
            f"| {name} | {', '.join(f'{r:.2f}' for r in rates)} | {ingest['mean'][name]} |"
        )
    lines += [
        "",
        f"Ratio this/base: {ingest['ratio_of_means']} (means), {ingest['ratio_of_best']} (best).",
        "",
    ]
    return lines


def machine() -> str:
    info = cpu()
    return f"{info['cpu']}, {info['cpus']} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", type=Path, default=Path("/tmp/pixseek-ocr-set"))
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--part", choices=["all", "ocr", "search"], default="all")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ink", choices=INK_MODES, default="legible", help="for a new set")
    args = parser.parse_args()
    truth = load_set(args.set, args.images, args.ink)
    previous = (
        json.loads((RESULTS / "ocr.json").read_text()) if (RESULTS / "ocr.json").is_file() else {}
    )
    result: dict[str, Any] = {
        **previous,
        "images": len(truth["images"]),
        "words": len(word_rows(truth)),
        "fonts": truth["fonts"],
        "ink": truth.get("ink", "box-mean"),
        "machine": machine(),
        "load": load(),
    }
    if args.part in ("all", "ocr"):
        result["ocr"] = ocr_quality(args.set, truth)
        write_report(result)
    if args.part in ("all", "search"):
        from bench.ocr_search import search_part

        result["search"] = search_part(args.set, truth, args.rounds)
    result["load_after"] = load()
    write_report(result)


if __name__ == "__main__":
    main()
