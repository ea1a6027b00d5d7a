"""An independent reference for the evaluation metrics: plain numpy on strict orders.

Written from the textbook definitions, sharing no code with `pixseek.evaluation.metrics`: every
metric is computed on one strict order of the ranked list, and ties are handled by brute force,
averaging over every order the tied items could be put in.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np


def strict_metrics(rel: np.ndarray, n_relevant: int, ks: Sequence[int]) -> dict[str, float]:
    """Metrics of one strict ranking; rel[i] = 1.0 when the item at rank i + 1 is relevant."""
    rel = np.asarray(rel, dtype=np.float64)
    ranks = np.arange(1, len(rel) + 1, dtype=np.float64)
    precision_at_rank = np.cumsum(rel) / ranks if len(rel) else rel
    out = {
        "AP": float(np.sum(precision_at_rank * rel) / n_relevant),
        "MRR": float(1.0 / ranks[np.argmax(rel)]) if rel.any() else 0.0,
    }
    for k in ks:
        top = rel[:k]
        out[f"R@{k}"] = float(top.sum() / n_relevant)
        out[f"P@{k}"] = float(top.sum() / k)
        out[f"AP@{k}"] = float(np.sum(precision_at_rank[:k] * top) / min(n_relevant, k))
        gains = top / np.log2(np.arange(2, len(top) + 2))
        ideal = np.sum(1.0 / np.log2(np.arange(2, min(n_relevant, k) + 2)))
        out[f"nDCG@{k}"] = float(gains.sum() / ideal)
    return out


def tie_orders(scores: Sequence[float]) -> int:
    """How many strict orders a ranking with these scores stands for."""
    counts: dict[float, int] = {}
    for score in scores:
        counts[score] = counts.get(score, 0) + 1
    return math.prod(math.factorial(c) for c in counts.values())


def expected_metrics(
    ranking: Sequence[tuple[str, float]],
    relevant: set[str],
    n_relevant: int,
    ks: Sequence[int],
    max_orders: int = 50_000,
) -> dict[str, float]:
    """The mean of `strict_metrics` over every order of the tied items (brute force)."""
    if tie_orders([s for _, s in ranking]) > max_orders:
        raise ValueError("too many tie orders for brute force")
    groups: list[list[str]] = []
    last = None
    for point_id, score in ranking:
        if groups and score == last:
            groups[-1].append(point_id)
        else:
            groups.append([point_id])
        last = score
    totals: dict[str, float] = {}
    count = 0
    for order in itertools.product(*(itertools.permutations(g) for g in groups)):
        ids = [point_id for group in order for point_id in group]
        rel = np.array([1.0 if i in relevant else 0.0 for i in ids])
        for name, value in strict_metrics(rel, n_relevant, ks).items():
            totals[name] = totals.get(name, 0.0) + value
        count += 1
    return {name: value / count for name, value in totals.items()}
