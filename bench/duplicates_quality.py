"""Hash quality on the near-duplicate set: precision and recall per transformation and threshold.

Every image is decoded the way ingest decodes it (`decode_image`, JPEG draft mode for a 224 px
model), then hashed with each method. All pairs of the set are compared (a few thousand images:
fine in numpy), so the counts are exact for the set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bench.duplicates_set import TARGET
from pixseek.decode import decode_image
from pixseek.phash import dhash, distance_matrix, phash

MAX_PIXELS = 178_956_970
MODEL_SIZE = 224


def methods() -> dict[str, Callable[[Image.Image], int]]:
    import imagehash

    return {
        "phash": phash,
        "dhash": dhash,
        "imagehash.phash": lambda im: int(str(imagehash.phash(im)), 16),
        "imagehash.dhash": lambda im: int(str(imagehash.dhash(im)), 16),
    }


def hash_all(root: Path, manifest: list[dict]) -> tuple[dict[str, list[int]], dict[str, float]]:
    """Hashes per method and the mean hashing time per image (ms, decode excluded)."""
    hashes: dict[str, list[int]] = {name: [] for name in methods()}
    seconds = dict.fromkeys(hashes, 0.0)
    for entry in manifest:
        image = decode_image((root / entry["file"]).read_bytes(), MAX_PIXELS, MODEL_SIZE).image
        for name, fn in methods().items():
            started = time.perf_counter()
            hashes[name].append(fn(image))
            seconds[name] += time.perf_counter() - started
    return hashes, {k: round(v / len(manifest) * 1000, 3) for k, v in seconds.items()}


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def score_pairs(pred: np.ndarray, manifest: list[dict]) -> dict:
    """Recall and precision of a predicted "same picture" matrix (diagonal ignored): per
    transformation, over the target set (originals + TARGET variants), and over everything."""
    family = np.array([e["family"] for e in manifest])
    label = np.array([e["class"] for e in manifest])
    kind = np.array([e["transform"] for e in manifest])
    pred = pred.copy()
    np.fill_diagonal(pred, False)
    same = family[:, None] == family[None, :]
    same_class = (label[:, None] == label[None, :]) & ~same
    orig_of = {int(f): i for i, (f, k) in enumerate(zip(family, kind, strict=True)) if k == "orig"}
    row: dict = {"per_transform": {}}
    for name in sorted(set(kind) - {"orig"}):
        rows = np.flatnonzero(kind == name)
        found = sum(int(pred[orig_of[int(family[i])], i]) for i in rows)
        tp = int((pred[rows] & same[rows]).sum())
        fp = int((pred[rows] & ~same[rows]).sum())
        row["per_transform"][name] = {
            "recall": _ratio(found, len(rows)),
            "precision": _ratio(tp, tp + fp),
            "false_pairs": fp,
        }
    in_target = np.isin(kind, ("orig", *TARGET))
    tpred = np.triu(pred[np.ix_(in_target, in_target)], 1)
    target_same = same[np.ix_(in_target, in_target)]
    ttp, tfp = int((tpred & target_same).sum()), int((tpred & ~target_same).sum())
    target_rows = np.flatnonzero(np.isin(kind, TARGET))
    tfound = sum(int(pred[orig_of[int(family[i])], i]) for i in target_rows)
    row["target"] = {
        "recall": _ratio(tfound, len(target_rows)),
        "precision": _ratio(ttp, ttp + tfp),
        "false_pairs": tfp,
    }
    allpred = np.triu(pred, 1)
    atp, afp = int((allpred & same).sum()), int((allpred & ~same).sum())
    row["all"] = {
        "precision": _ratio(atp, atp + afp),
        "false_pairs": afp,
        "false_pairs_same_class": int((allpred & same_class).sum()),
    }
    return row


def evaluate(hashes: list[int], manifest: list[dict], thresholds: list[int]) -> dict:
    """score_pairs for "Hamming distance <= t", per threshold t."""
    dist = distance_matrix(hashes, hashes)
    return {str(t): score_pairs(dist <= t, manifest) for t in thresholds}


def negative_distances(hashes: list[int], manifest: list[dict]) -> dict[str, int]:
    """How close the closest distinct pictures come: originals only, same class vs any."""
    originals = [i for i, e in enumerate(manifest) if e["transform"] == "orig"]
    dist = distance_matrix([hashes[i] for i in originals], [hashes[i] for i in originals])
    np.fill_diagonal(dist, 999)
    label = np.array([manifest[i]["class"] for i in originals])
    same_class = label[:, None] == label[None, :]
    return {
        "min_any": int(dist.min()),
        "min_same_class": int(dist[same_class].min()),
        "p01_any": int(np.percentile(dist[np.triu_indices(len(originals), 1)], 1)),
    }
