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


def expected_metrics_by_group(
    ranking: Sequence[tuple[str, float]],
    relevant: set[str],
    n_relevant: int,
    ks: Sequence[int],
    max_group: int = 8,
) -> dict[str, float]:
    """The same expectation for long rankings with many ties, still by brute force.

    Every metric is a sum over ranks, and what happens inside one tie group depends only on the
    group's own order (the relevant items above a group are the same in every order). So the
    expectation is the sum, over groups, of the mean contribution over the group's own orders:
    factorials add instead of multiplying.
    """
    ks = list(dict.fromkeys(ks))
    groups: list[list[str]] = []
    last = None
    for point_id, score in ranking:
        if groups and score == last:
            groups[-1].append(point_id)
        else:
            groups.append([point_id])
        last = score
    sums = {"AP": 0.0, "MRR": 0.0}
    for k in ks:
        sums |= {f"hits@{k}": 0.0, f"AP@{k}": 0.0, f"DCG@{k}": 0.0}
    start = before = 0
    first_hit_seen = False
    for group in groups:
        if len(group) > max_group:
            raise ValueError(f"a tie group of {len(group)} is too large for brute force")
        orders = list(itertools.permutations(group))
        part = dict.fromkeys(sums, 0.0)
        for order in orders:
            rel = np.array([1.0 if i in relevant else 0.0 for i in order])
            pos = np.arange(start, start + len(order))
            precision = (before + np.cumsum(rel)) / (pos + 1)
            part["AP"] += float(np.sum(precision * rel))
            if not first_hit_seen and rel.any():
                part["MRR"] += float(1.0 / (pos[np.argmax(rel)] + 1))
            for k in ks:
                inside = pos < k
                part[f"hits@{k}"] += float(rel[inside].sum())
                part[f"AP@{k}"] += float(np.sum((precision * rel)[inside]))
                part[f"DCG@{k}"] += float(np.sum(rel[inside] / np.log2(pos[inside] + 2)))
        for name in sums:
            sums[name] += part[name] / len(orders)
        hits = sum(1 for i in group if i in relevant)
        first_hit_seen = first_hit_seen or hits > 0
        before += hits
        start += len(group)
    out = {"AP": sums["AP"] / n_relevant, "MRR": sums["MRR"]}
    for k in ks:
        out[f"R@{k}"] = sums[f"hits@{k}"] / n_relevant
        out[f"P@{k}"] = sums[f"hits@{k}"] / k
        out[f"AP@{k}"] = sums[f"AP@{k}"] / min(n_relevant, k)
        ideal = np.sum(1.0 / np.log2(np.arange(2, min(n_relevant, k) + 2)))
        out[f"nDCG@{k}"] = float(sums[f"DCG@{k}"] / ideal)
    return out
