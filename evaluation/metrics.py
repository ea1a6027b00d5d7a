"""Retrieval metrics per query, tie-aware, plus bootstrap confidence intervals.

A ranking is a list of (point id, score) best first, with the raw float scores the store returned
(never rounded: rounding invents ties). Items with equal scores form a tie group, and every metric
(AP, AP@k, MRR, nDCG@k, R@k, P@k) is the exact expectation over the orders the tie could have been
broken in, each order equally likely. So a metric never depends on an arbitrary tie-break, and a
query with one relevant item has AP == MRR. (scikit-learn's `average_precision_score` differs
under ties: it takes precision once per tie group; its nDCG with `ignore_ties=False` agrees.)

Binary relevance. `n_relevant` is every relevant item the query lists, including those missing
from the collection (as trec_eval counts its qrels), unless the caller restricts it to the items
present. Queries with no relevant item are undefined for recall/AP/nDCG: they are reported and
left out of the averages rather than counted as zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Ranking = Sequence[tuple[str, float]]


@dataclass(frozen=True)
class TieGroup:
    start: int  # 0-based position of the group's first item
    size: int
    hits: int  # relevant items in the group


def tie_groups(ranking: Ranking, relevant: set[str]) -> list[TieGroup]:
    groups: list[TieGroup] = []
    position = 0
    while position < len(ranking):
        end = position + 1
        while end < len(ranking) and ranking[end][1] == ranking[position][1]:
            end += 1
        hits = sum(1 for item, _ in ranking[position:end] if item in relevant)
        groups.append(TieGroup(position, end - position, hits))
        position = end
    return groups


def hits_at(groups: list[TieGroup], k: int) -> float:
    """Expected number of relevant items in the first k positions."""
    total = 0.0
    for g in groups:
        if g.start >= k:
            break
        inside = min(g.start + g.size, k) - g.start
        total += g.hits * inside / g.size
    return total


def recall_at(groups: list[TieGroup], n_relevant: int, k: int) -> float:
    return hits_at(groups, k) / n_relevant


def precision_at(groups: list[TieGroup], k: int) -> float:
    """Divides by k even when fewer than k results came back (missing results count as misses)."""
    return hits_at(groups, k) / k


def average_precision(groups: list[TieGroup], n_relevant: int, k: int | None = None) -> float:
    """Expected AP over the ranking (AP@k when k is given), normalised by min(n_relevant, k).

    AP = (1/R) * sum over relevant items of the precision at their rank. For a tie group of m
    items with r relevant, starting after `before` relevant items: a given relevant item sits at
    offset j with probability 1/m, and then (hypergeometric) j * (r - 1) / (m - 1) of the group's
    other relevant items are above it on average. Precision at that rank is linear in that count,
    so its expectation is exact. Relevant items never retrieved add 0.
    """
    total = 0.0
    before = 0
    for g in groups:
        if k is not None and g.start >= k:
            break
        if g.hits:
            m, r = g.size, g.hits
            last = m if k is None else min(m, k - g.start)
            for j in range(last):
                above = 0.0 if m == 1 else j * (r - 1) / (m - 1)
                total += (r / m) * (before + 1 + above) / (g.start + j + 1)
        before += g.hits
    denominator = n_relevant if k is None else min(n_relevant, k)
    return total / denominator


def ndcg_at(groups: list[TieGroup], n_relevant: int, k: int) -> float:
    """Binary nDCG@k with tie-averaged gains (scikit-learn's `ignore_ties=False`)."""
    dcg = 0.0
    for g in groups:
        if g.start >= k:
            break
        mean_gain = g.hits / g.size
        end = min(g.start + g.size, k)
        dcg += mean_gain * sum(1.0 / math.log2(p + 2) for p in range(g.start, end))
    ideal = sum(1.0 / math.log2(p + 2) for p in range(min(n_relevant, k)))
    return dcg / ideal


def reciprocal_rank(groups: list[TieGroup]) -> float:
    """Expected 1/rank of the first relevant item (0 when none was retrieved)."""
    for g in groups:
        if g.hits:
            m, r = g.size, g.hits
            # P(first relevant at offset j) = C(m-j-1, r-1) / C(m, r)
            # Summed in the same order and form as `average_precision`, so that with a single
            # relevant item both give bit-identical values.
            total = 0.0
            for j in range(m - r + 1):
                total += math.comb(m - j - 1, r - 1) / math.comb(m, r) / (g.start + j + 1)
            return total
    return 0.0


def metric_names(ks: Sequence[int]) -> list[str]:
    names = ["AP", "MRR"]
    for k in ks:
        names += [f"R@{k}", f"P@{k}", f"AP@{k}", f"nDCG@{k}"]
    return names


def query_metrics(
    ranking: Ranking, relevant: set[str], ks: Sequence[int], n_relevant: int | None = None
) -> dict[str, float]:
    """All metrics for one query; empty dict when the query has no relevant items.

    `relevant` holds the relevant ids present in the collection; `n_relevant` (default: their
    count) is the denominator, which includes relevant items missing from the collection.
    """
    n = len(relevant) if n_relevant is None else n_relevant
    if n < len(relevant):
        raise ValueError("n_relevant cannot be below the number of relevant items present")
    if n == 0:
        return {}
    groups = tie_groups(ranking, relevant)
    out: dict[str, float] = {"AP": average_precision(groups, n), "MRR": reciprocal_rank(groups)}
    for k in ks:
        out[f"R@{k}"] = recall_at(groups, n, k)
        out[f"P@{k}"] = precision_at(groups, k)
        out[f"AP@{k}"] = average_precision(groups, n, k)
        out[f"nDCG@{k}"] = ndcg_at(groups, n, k)
    return out


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high}


def bootstrap(values: Sequence[float], rounds: int = 1000, seed: int = 0) -> Estimate:
    """Mean with a 95% percentile bootstrap interval over queries."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(rounds, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Estimate(float(data.mean()), float(low), float(high))


def paired_bootstrap(
    values: Sequence[float], baseline: Sequence[float], rounds: int = 1000, seed: int = 0
) -> Estimate:
    """Mean difference (values - baseline) over the same queries, with a 95% interval.

    Resampling query pairs keeps the per-query correlation, so the interval is much tighter
    (and honest) compared with subtracting two independent intervals.
    """
    return bootstrap(np.asarray(values) - np.asarray(baseline), rounds, seed)
