"""Cutoffs that adapt to the query: where a result list ends, and why.

A fixed `--threshold` suits no query: CLIP cosine scores of relevant images range from ~0.2 for
abstract text prompts to ~0.9 for near-duplicate image queries. Two per-query rules:

  gap:M   keep the hits scoring at least (top score - M): "as good as the best, within M".
  z:Z     keep the hits whose score is Z standard deviations above the collection's background:
          the cosine of the query with a random sample of stored points (`BACKGROUND_SAMPLE`,
          taken from the start of the id order: ids are UUID5 hashes, so that order is random).

What they cannot do: neither knows how many images are relevant. `gap` ends a list early when
one near-duplicate scores far above everything else; `z` keeps long lists for queries that many
images match a little (a common colour, "photo"). Both need cosine scores, so fused (hybrid,
generated-image) rankings refuse them, as they refuse --threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pixseek.errors import InputError
from pixseek.store.base import CLIP_VECTOR, Hit, VectorStore

BACKGROUND_SAMPLE = 512
CutoffKind = Literal["gap", "z"]


@dataclass(frozen=True)
class Cutoff:
    kind: CutoffKind
    value: float

    def describe(self) -> str:
        return f"{self.kind}:{self.value:g}"


@dataclass(frozen=True)
class Background:
    mean: float
    std: float
    sample: int


@dataclass(frozen=True)
class CutoffResult:
    hits: list[Hit]
    ended_by: str | None  # why the list ends early, for the user; None when it did not


def parse_cutoff(text: str) -> Cutoff:
    """`gap:0.05` or `z:3`; a one-line InputError otherwise."""
    kind, _, raw = text.strip().partition(":")
    kind = kind.strip().lower()
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if kind not in ("gap", "z") or not math.isfinite(value) or value < 0:
        raise InputError(
            f"cutoff {text!r} is not understood; use gap:MARGIN (e.g. gap:0.05, below the top "
            "score) or z:SCORE (e.g. z:3, above the collection's background)"
        )
    return Cutoff(kind, value)  # type: ignore[arg-type]


def background(store: VectorStore, collection: str, direction: np.ndarray) -> Background:
    """Mean and spread of cos(query, x) over a random sample of the collection."""
    sample = zip(range(BACKGROUND_SAMPLE), store.scroll(collection, fields=[]), strict=False)
    ids = [p.id for _, p in sample]
    points = store.retrieve(collection, ids, with_vectors=True)
    rows = [p.vectors[CLIP_VECTOR] for p in points if CLIP_VECTOR in p.vectors]
    if len(rows) < 2:
        return Background(0.0, 0.0, len(rows))
    matrix = np.asarray(rows, dtype=np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    query = direction / max(float(np.linalg.norm(direction)), 1e-12)
    scores = matrix @ query
    return Background(float(scores.mean()), float(scores.std()), len(rows))


def apply_cutoff(
    hits: list[Hit], cutoff: Cutoff, top: float | None, bg: Background | None
) -> CutoffResult:
    """Drop the hits below the cutoff; `top` is the query's best score (page 1's first hit)."""
    if cutoff.kind == "gap":
        if top is None:
            return CutoffResult(hits, None)
        floor = top - cutoff.value
        reason = f"cutoff gap:{cutoff.value:g}: scores below {floor:.4f} (top {top:.4f} - {cutoff.value:g})"
    else:
        if bg is None or bg.std <= 0:
            return CutoffResult(
                hits, f"cutoff z:{cutoff.value:g} not applied: too few points for a background"
            )
        floor = bg.mean + cutoff.value * bg.std
        reason = (
            f"cutoff z:{cutoff.value:g}: scores below {floor:.4f} (background mean "
            f"{bg.mean:.4f} + {cutoff.value:g} x std {bg.std:.4f}, {bg.sample} points)"
        )
    kept = [hit for hit in hits if hit.score >= floor]
    return CutoffResult(kept, reason if len(kept) < len(hits) else None)
