"""Metric code checked against a brute-force reference, scikit-learn and worked examples."""

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

from tests.eval_reference import expected_metrics, expected_metrics_by_group


def _full_ranking(scores: list[float]) -> list[tuple[str, float]]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [(str(i), scores[i]) for i in order]


@pytest.mark.parametrize("seed", range(40))
def test_every_metric_is_the_expectation_over_tie_orders(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 10))
    scores = rng.integers(0, 4, size=n).astype(float).tolist()  # coarse: ties everywhere
    truth = rng.random(n) < 0.4
    truth[rng.integers(0, n)] = True
    relevant = {str(i) for i in range(n) if truth[i]}
    missing = int(rng.integers(0, 3))  # relevant items the collection does not hold
    ranking = _full_ranking(scores)[: int(rng.integers(1, n + 1))]  # cut at some depth
    kept = {i for i, _ in ranking}
    ks = [1, 2, 3, 5, n]
    ours = query_metrics(ranking, relevant, ks, n_relevant=len(relevant) + missing)
    reference = expected_metrics(ranking, relevant, len(relevant) + missing, ks)
    by_group = expected_metrics_by_group(ranking, relevant, len(relevant) + missing, ks)
    assert kept and set(ours) == set(reference) == set(by_group)
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name
        assert by_group[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("seed", range(10))
def test_ap_matches_sklearn_without_ties_and_ndcg_with_ties(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    distinct = rng.permutation(n).astype(float).tolist()
    coarse = rng.integers(0, 6, size=n).astype(float).tolist()
    truth = rng.random(n) < 0.3
    truth[rng.integers(0, n)] = True
    relevant = {str(i) for i in range(n) if truth[i]}
    plain = query_metrics(_full_ranking(distinct), relevant, ks=[n])
    assert plain["AP"] == pytest.approx(average_precision_score(truth, distinct))
    tied = query_metrics(_full_ranking(coarse), relevant, ks=[1, 3, 5, n])
    for k in (1, 3, 5, n):
        expected = ndcg_score([truth.astype(float)], [coarse], k=k)
        assert tied[f"nDCG@{k}"] == pytest.approx(expected), k


@pytest.mark.parametrize("seed", range(30))
def test_single_relevant_item_gives_ap_equal_to_mrr_exactly(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    scores = rng.integers(0, 5, size=n).astype(float).tolist()
    ranking = _full_ranking(scores)
    target = str(rng.integers(0, n + 3))  # sometimes not retrieved at all
    m = query_metrics(ranking, {target} if int(target) < n else set(), ks=[1, 10], n_relevant=1)
    assert m["AP"] == m["MRR"]


def test_missing_relevant_items_stay_in_the_denominator():
    ranking = [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    counted = query_metrics(ranking, {"a"}, ks=[3], n_relevant=2)  # "z" listed but not stored
    assert counted["R@3"] == 0.5 and counted["AP"] == 0.5 and counted["MRR"] == 1.0
    present = query_metrics(ranking, {"a"}, ks=[3])
    assert present["R@3"] == 1.0 and present["AP"] == 1.0
    nothing_present = query_metrics(ranking, set(), ks=[3], n_relevant=2)
    assert nothing_present["R@3"] == 0.0 and nothing_present["AP"] == 0.0
    with pytest.raises(ValueError):
        query_metrics(ranking, {"a", "b"}, ks=[3], n_relevant=1)


def test_ap_under_ties_is_the_expectation_not_the_step_wise_value():
    # relevant "a" tied with two others for first: E[1/rank] = (1 + 1/2 + 1/3) / 3
    ranking = [("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 0.5)]
    m = query_metrics(ranking, {"a"}, ks=[4])
    assert m["AP"] == m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    truth, scores = [1, 0, 0, 0], [1.0, 1.0, 1.0, 0.5]
    assert average_precision_score(truth, scores) == pytest.approx(1 / 3)  # step-wise differs


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
