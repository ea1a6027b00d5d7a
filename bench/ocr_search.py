"""bench/ocr.py, part `search`: ingest images/s with and without OCR, and retrieval R@1/R@5 of
word queries in keyword, dense and hybrid mode on the rendered-text set.

Ingest rounds are interleaved (baseline, keywords, keywords + OCR) on fresh embedded stores, so
each sees the same machine load. "baseline" is today's ingest path with the keyword index
switched off (no keyword text, no BM25 vector); "keywords" is the default path now (captions,
labels and file-name words indexed, no OCR); "keywords + ocr" is `pixseek ingest --ocr`
(embedding, then the OCR pass in its own threads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import load
from bench.ocr import TARGET_VISIBLE, in_target, word_rows


def _ingest(folder: Path, data: Path, embedders: Any, keywords: bool) -> tuple[Any, float]:
    import pixseek.ingest.embed as embed
    from pixseek.ingest.pipeline import IngestOptions, run_ingest

    from pixseek.store.base import TEXT_VECTOR
    from pixseek.store.edge import EdgeStore

    store = EdgeStore(data)
    embed.TEXT_VECTOR = TEXT_VECTOR if keywords else "-off-"  # the baseline: no keyword index
    try:
        summary = run_ingest(store, embedders, [str(folder)], IngestOptions("ocrbench"))
    finally:
        embed.TEXT_VECTOR = TEXT_VECTOR
    store.close()
    return store, summary.seconds


def _ocr(store: Any, workers: int) -> tuple[float, Any]:
    from pixseek.ingest.enrich import run_enrich
    from pixseek.ingest.ocr import RapidOcrEngine

    started = time.perf_counter()
    summary = run_enrich(store, "ocrbench", RapidOcrEngine(threads=1), workers=workers)
    store.close()
    return time.perf_counter() - started, summary


def retrieval_part(set_dir: Path, data: Path) -> dict:
    from pixseek.search.text_encoder import query_encoder

    from pixseek.config import load_settings
    from pixseek.store.edge import EdgeStore

    truth = json.loads((set_dir / "truth.json").read_text())
    store = EdgeStore(data)
    encoder = query_encoder(load_settings())
    rows = word_rows(truth)
    queries = []
    for row in rows:
        keys = ["single words"]
        if in_target(row):
            keys.append("single words: 4+ letters, >= 20 px, not occluded (target)")
            if row["visible"]:
                keys.append(f"single words: {TARGET_VISIBLE}")
        queries += [(key, row["word"], row["image"]) for key in keys]
    for record in truth["images"]:
        for item in record["items"]:
            if len(item["words"]) == 2:
                queries.append(("two-word phrases", " ".join(item["words"]), record["filename"]))
    retrieval: dict[str, dict[str, dict]] = {}
    for mode, fusion, label in [
        ("keyword", "rrf", "keyword"),
        ("dense", "rrf", "dense (random CLIP)"),
        ("hybrid", "rrf", "hybrid rrf"),
        ("hybrid", "dbsf", "hybrid dbsf"),
    ]:
        ranks = _recall(store, encoder, queries, mode, fusion)
        for group in dict.fromkeys(q[0] for q in queries):
            found = [r for (g, _), r in ranks.items() if g == group]
            retrieval.setdefault(group, {})[label] = {
                "n": len(found),
                "r1": round(sum(r == 1 for r in found) / len(found), 3),
                "r5": round(sum(r is not None for r in found) / len(found), 3),
            }
        print(label, "done", file=sys.stderr, flush=True)
    return retrieval


def _recall(store: Any, encoder: Any, queries: list[tuple[str, str, str]], mode: str, fusion: str):
    from pixseek.search.engine import run_search
    from pixseek.search.query import QuerySpec, Term

    ranks = {}
    for group_key, text, relevant in queries:
        spec = QuerySpec((Term("text", text),))
        hits = run_search(store, encoder, "ocrbench", spec, limit=5, mode=mode, fusion=fusion)
        order = [hit.payload.get("source") for hit in hits]
        ranks[(group_key, text)] = order.index(relevant) + 1 if relevant in order else None
    return ranks


def search_part(set_dir: Path, truth: dict, rounds: int) -> dict:
    from pixseek.config import load_settings
    from pixseek.models.bundle import load_image_embedders
    from pixseek.models.random_weights import write_random_clip

    work = Path(tempfile.mkdtemp(prefix="pixseek-ocrbench-"))
    os.environ["PIXSEEK_CLIP_MODEL"] = f"local-dir:{write_random_clip(work / 'model', 'ViT-B-32')}"
    settings = load_settings()
    embedders = load_image_embedders(settings)
    folder = set_dir / "images"
    n = len(list(folder.glob("*.jpg")))
    rates: dict[str, list[float]] = {"baseline": [], "keywords": [], "keywords + ocr": []}
    _ingest(folder, work / "warm-up", embedders, keywords=False)  # ONNX export, caches
    for round_ in range(rounds):  # the order alternates, so neither run always goes first
        order = [False, True] if round_ % 2 == 0 else [True, False]
        for keywords in order:
            _, seconds = _ingest(folder, work / f"r{round_}-{keywords}", embedders, keywords)
            rates["keywords" if keywords else "baseline"].append(n / seconds)
        print("round", round_, {k: round(v[-1], 2) for k, v in rates.items() if v}, flush=True)
    store, seconds = _ingest(folder, work / "ocr", embedders, keywords=True)
    ocr_seconds, summary = _ocr(store, settings.ocr_workers)
    rates["keywords + ocr"].append(n / (seconds + ocr_seconds))
    ocr_stats = {
        "ocr_pass_images_per_s": round(n / ocr_seconds, 2),
        "ocr_ms_per_image_thread": round(1000 * summary.ocr_seconds / max(1, summary.ocr_done)),
        "ocr_workers": settings.ocr_workers,
        "with_text": summary.with_text,
    }
    print("ocr", ocr_stats, flush=True)
    # Retrieval in a fresh process: torch's text tower next to the OCR sessions aborted once.
    from pixseek.store.edge import _close_all

    _close_all()  # release the shard locks for the child
    for _ in range(2):  # the first text-tower ONNX export has aborted here once; then cached
        done = subprocess.run(
            [sys.executable, "-m", "bench.ocr_search", str(set_dir), str(work / "ocr")],
            # torch text tower: the ONNX export of this random ViT-B-32 fails here, and the
            # process then aborted in the fallback once (not reproduced with torch chosen).
            env={**os.environ, "PIXSEEK_TEXT_BACKEND": "torch"},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            break
        print("retrieval step failed, once more:", done.stderr[-300:], flush=True)
    if done.returncode != 0:
        raise SystemExit(f"retrieval failed: {done.stderr[-2000:]}")
    retrieval = json.loads(done.stdout.strip().splitlines()[-1])
    best = {name: max(values) for name, values in rates.items()}
    return {
        "retrieval": retrieval,
        "ingest": {
            "images": n,
            "rounds": {k: [round(r, 2) for r in v] for k, v in rates.items()},
            "keywords_over_baseline": round(best["keywords"] / best["baseline"], 3),
            "ocr_over_baseline": round(best["keywords + ocr"] / best["baseline"], 3),
            **ocr_stats,
        },
        "load": load(),
        "notes": [
            "CLIP ViT-B-32 with random weights (no real weights offline): dense R@k is chance "
            "level, and hybrid shows the cost of fusing with a useless dense ranking; with real "
            "weights the dense side reads some large words itself.",
            f"keywords/baseline best-of-rounds ratio {best['keywords'] / best['baseline']:.3f} "
            "(target >= 0.98 for ingest without --ocr).",
            "The OCR pass reads images back from disk after embedding (ingest --ocr = ingest, "
            "then enrich ocr), in its own thread pool with at most 4 images per thread in flight.",
        ],
    }


if __name__ == "__main__":  # the retrieval step, run by search_part in a fresh process
    print(json.dumps(retrieval_part(Path(sys.argv[1]), Path(sys.argv[2]))))
