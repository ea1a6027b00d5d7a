"""MMR, facets and browse on both backends, with hand-made vectors (issue 21)."""

from __future__ import annotations

import uuid
from collections import Counter

import numpy as np
import pytest

from pixseek.store import Nearest, PointRecord, RankFusion, SearchRequest
from pixseek.store.base import Browse


def _id(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def _num(point_id: str) -> int:
    return uuid.UUID(point_id).int - 1


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four tight clusters of 8 near-identical vectors; the query sits nearest cluster 0."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8, dtype=np.float32)[:4] + 0.1
    rows = np.repeat(centres, 8, axis=0) + rng.normal(0, 0.01, (32, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    query = centres[0] * 1.0 + centres[1] * 0.6 + centres[2] * 0.5 + centres[3] * 0.4
    return rows, query / np.linalg.norm(query)


@pytest.fixture
def clustered(store):
    rows, _ = _clusters()
    store.create_collection("c", {"clip": 8}, {})
    labels = ["tench", "church", "parachute", "golf ball"]
    store.upsert(
        "c",
        [
            PointRecord(
                _id(i),
                {"clip": v},
                {
                    "labels": [labels[i // 8]] + (["outdoor"] if i % 2 else []),
                    "format": "JPEG" if i % 3 else "PNG",
                    "mtime": 1_700_000_000 + (i * 7919) % 32,
                    "source": f"{i}.jpg",
                },
            )
            for i, v in enumerate(rows)
        ],
    )
    return store


def _mean_pairwise(rows: np.ndarray, ids: list[str]) -> float:
    picked = rows[[_num(i) for i in ids]]
    sims = picked @ picked.T
    n = len(ids)
    return float((sims.sum() - n) / (n * (n - 1)))


def test_mmr_keeps_the_top_hit_and_spreads_the_rest(clustered):
    rows, query = _clusters()
    plain = clustered.search("c", SearchRequest(Nearest(query), limit=10))
    diverse = clustered.search(
        "c", SearchRequest(Nearest(query), limit=10, diversity=0.7, diversity_candidates=32)
    )
    assert diverse[0].id == plain[0].id
    assert _mean_pairwise(rows, [h.id for h in diverse]) < _mean_pairwise(
        rows, [h.id for h in plain]
    )
    assert len({_num(h.id) // 8 for h in diverse}) > len({_num(h.id) // 8 for h in plain})
    # MMR scores stay cosine similarities to the query.
    for hit in diverse:
        assert hit.score == pytest.approx(float(rows[_num(hit.id)] @ query), abs=1e-4)


def test_mmr_over_fused_candidates(clustered):
    rows, query = _clusters()
    fused = RankFusion([Nearest(query), Nearest(rows[0])], candidates=32)
    plain = clustered.search("c", SearchRequest(fused, limit=8))
    diverse = clustered.search(
        "c",
        SearchRequest(
            fused, limit=8, diversity=0.7, diversity_candidates=32, diversity_vector=query
        ),
    )
    assert len(diverse) == 8
    assert _mean_pairwise(rows, [h.id for h in diverse]) < _mean_pairwise(
        rows, [h.id for h in plain]
    )


def test_facet_counts_match_the_payloads(clustered):
    payloads = [p.payload for p in clustered.scroll("c")]
    expected = Counter(label for p in payloads for label in p["labels"])
    counted = {f.value: f.count for f in clustered.facet("c", "labels")}
    assert counted == dict(expected)
    from qdrant_client import models

    only_png = models.Filter(
        must=[models.FieldCondition(key="format", match=models.MatchValue(value="PNG"))]
    )
    png = Counter(label for p in payloads if p["format"] == "PNG" for label in p["labels"])
    assert {f.value: f.count for f in clustered.facet("c", "labels", filter=only_png)} == dict(png)
    formats = {f.value: f.count for f in clustered.facet("c", "format", limit=1)}
    assert formats == {"JPEG": 21}  # the limit keeps the most frequent value


def test_browse_orders_by_mtime_and_pages(clustered):
    newest = clustered.browse("c", Browse(limit=10))
    mtimes = [p.payload["mtime"] for p in newest]
    assert mtimes == sorted(mtimes, reverse=True) and len(newest) == 10
    everything = [p.payload["mtime"] for p in clustered.browse("c", Browse(limit=40))]
    second = clustered.browse("c", Browse(limit=10, offset=10))
    assert [p.payload["mtime"] for p in second] == everything[10:20]
    oldest = clustered.browse("c", Browse(limit=3, newest_first=False))
    assert [p.payload["mtime"] for p in oldest] == sorted(everything)[:3]


def test_collection_facets_count_labels_formats_and_years(clustered):
    from pixseek.search.facets import collection_facets

    years = {i: f"{2001 + i % 4 * 3}-06-0{1 + i % 5}T12:00:00Z" for i in range(0, 32, 2)}
    for i, taken in years.items():
        clustered.set_payload("c", _id(i), {"taken": taken})
    payloads = [p.payload for p in clustered.scroll("c")]
    facets = collection_facets(clustered, "c").as_dict()["facets"]
    assert facets["labels"] == dict(Counter(lab for p in payloads for lab in p["labels"]))
    assert facets["formats"] == dict(Counter(p["format"] for p in payloads))
    assert facets["years"] == dict(Counter(t[:4] for t in years.values()))
    assert facets["cameras"] == {}
