"""Metric code checked against scikit-learn and worked examples, incl. ties and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pixseek.evaluation.metrics import (
    bootstrap,
    paired_bootstrap,
    query_metrics,
    reciprocal_rank,
    tie_groups,
)
from sklearn.metrics import average_precision_score, ndcg_score


def _full_ranking(scores: list[float]) -> list[tuple[str, float]]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [(str(i), scores[i]) for i in order]


@pytest.mark.parametrize("seed", range(25))
def test_ap_and_ndcg_match_sklearn_with_ties(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    # Coarse scores make ties common.
    scores = rng.integers(0, 6, size=n).astype(float).tolist()
    truth = rng.random(n) < 0.3
    truth[rng.integers(0, n)] = True
    relevant = {str(i) for i in range(n) if truth[i]}
    ranking = _full_ranking(scores)
    metrics = query_metrics(ranking, relevant, ks=[1, 3, 5, n])
    assert metrics["AP"] == pytest.approx(average_precision_score(truth, scores))
    for k in (1, 3, 5, n):
        expected = ndcg_score([truth.astype(float)], [scores], k=k)
        assert metrics[f"nDCG@{k}"] == pytest.approx(expected), k


def test_worked_example_without_ties():
    # ranks: 1 rel, 2 not, 3 rel, 4 not; 3 relevant in total (one never retrieved)
    ranking = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6)]
    m = query_metrics(ranking, {"a", "c", "z"}, ks=[1, 2, 4, 10])
    assert m["R@1"] == pytest.approx(1 / 3) and m["R@4"] == pytest.approx(2 / 3)
    assert m["P@2"] == pytest.approx(1 / 2) and m["P@4"] == pytest.approx(2 / 4)
    assert m["AP"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert m["AP@2"] == pytest.approx((1 / 1) / 2)
    assert m["MRR"] == 1.0
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["nDCG@4"] == pytest.approx(dcg / idcg)


def test_k_larger_than_the_result_list():
    ranking = [("a", 0.9), ("b", 0.5)]
    m = query_metrics(ranking, {"b"}, ks=[10])
    assert m["R@10"] == 1.0
    assert m["P@10"] == pytest.approx(1 / 10)  # missing results count as misses
    assert m["AP@10"] == pytest.approx(1 / 2)
    assert m["MRR"] == pytest.approx(1 / 2)


def test_ties_straddling_the_cutoff_are_expected_values():
    # Four items tied for first, one relevant: any of the four orders is equally likely.
    ranking = [("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0)]
    m = query_metrics(ranking, {"c"}, ks=[1, 2])
    assert m["R@1"] == pytest.approx(1 / 4) and m["R@2"] == pytest.approx(2 / 4)
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    # Two relevant in a group of three: first relevant at offset 0 w.p. 2/3, at offset 1 w.p. 1/3.
    groups = tie_groups([("x", 1.0), ("y", 1.0), ("z", 1.0)], {"x", "y"})
    assert reciprocal_rank(groups) == pytest.approx(2 / 3 * 1 + 1 / 3 * 1 / 2)


def test_no_relevant_items_and_nothing_retrieved():
    assert query_metrics([("a", 1.0)], set(), ks=[1]) == {}
    m = query_metrics([], {"a"}, ks=[1, 5])
    assert m["R@5"] == 0.0 and m["AP"] == 0.0 and m["MRR"] == 0.0 and m["nDCG@5"] == 0.0


def test_bootstrap_intervals():
    values = [0.0, 1.0] * 50
    estimate = bootstrap(values, rounds=2000)
    assert estimate.mean == 0.5 and estimate.low < 0.5 < estimate.high
    assert estimate.high - estimate.low < 0.25
    same = paired_bootstrap(values, values)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    better = paired_bootstrap([v + 0.1 for v in values], values)
    assert better.low == pytest.approx(0.1) and better.high == pytest.approx(0.1)
