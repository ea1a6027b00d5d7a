"""One conformance suite for both backends: Qdrant Edge and qdrant-client (server API)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from qdrant_client import models

from pixseek.errors import CollectionNotFound, UserError
from pixseek.store import Nearest, PointRecord, RankFusion, Recommend, SearchRequest


def _id(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def filled(store):
    store.create_collection("c", {"clip": 3, "dino": 2}, {"models": {"clip": "m"}})
    rows = [
        (_unit(1, 0, 0), {"labels": ["dog"], "width": 640, "taken": "2021-05-01T00:00:00Z"}),
        (_unit(0.9, 0.1, 0), {"labels": ["dog", "grass"], "width": 320}),
        (_unit(0, 1, 0), {"labels": ["cat"], "width": 1024, "taken": "2019-01-01T00:00:00Z"}),
        (_unit(-0.1, 0, 1), {"labels": ["car"], "width": 800}),
        (_unit(0.5, 0.5, 0), {"labels": ["cat", "dog"], "width": 640}),
    ]
    store.upsert(
        "c",
        [
            PointRecord(_id(i), {"clip": v, "dino": _unit(1, i)}, {**p, "source": f"{i}.jpg"})
            for i, (v, p) in enumerate(rows)
        ],
    )
    return store


def _ids(hits) -> list[int]:
    return [uuid.UUID(h.id).int - 1 for h in hits]


def test_collections_lifecycle(store):
    assert store.list_collections() == [] and store.get_collection("c") is None
    info = store.create_collection("c", {"clip": 3}, {"models": {"clip": "m"}})
    assert info.vectors == {"clip": 3}
    with pytest.raises(UserError, match="already exists"):
        store.create_collection("c", {"clip": 3}, {})
    (listed,) = store.list_collections()
    assert (listed.name, listed.points, listed.metadata) == ("c", 0, {"models": {"clip": "m"}})
    assert store.drop_collection("c") and not store.drop_collection("c")
    with pytest.raises(CollectionNotFound):
        store.count("c")
    with pytest.raises(UserError, match="invalid collection name"):
        store.get_collection("../etc")


def test_upsert_retrieve_scroll_count_delete(filled):
    assert filled.count("c") == 5 and filled.get_collection("c").points == 5
    (point,) = filled.retrieve("c", [_id(2)], with_vectors=True)
    assert point.payload["labels"] == ["cat"]
    assert np.allclose(point.vectors["clip"], [0, 1, 0], atol=1e-6)
    assert filled.retrieve("c", ["not-a-uuid", _id(99)]) == []
    sources = sorted(
        p.payload["source"] for p in filled.scroll("c", fields=["source"], page_size=2)
    )
    assert sources == [f"{i}.jpg" for i in range(5)]
    assert all(set(p.payload) == {"source"} for p in filled.scroll("c", fields=["source"]))
    filled.set_payload("c", _id(0), {"labels": ["wolf"]})
    assert filled.retrieve("c", [_id(0)])[0].payload["labels"] == ["wolf"]
    assert filled.retrieve("c", [_id(0)])[0].payload["width"] == 640  # set merges
    filled.delete("c", [_id(0), _id(1)])
    assert filled.count("c") == 3
    upsert_again = PointRecord(_id(2), {"clip": _unit(0, 1, 0), "dino": _unit(1, 1)}, {"x": 1})
    filled.upsert("c", [upsert_again])
    assert filled.count("c") == 3 and filled.retrieve("c", [_id(2)])[0].payload == {"x": 1}


def test_nearest_with_filters_threshold_and_offset(filled):
    query = Nearest(_unit(1, 0, 0))
    hits = filled.search("c", SearchRequest(query, limit=5))
    assert _ids(hits) == [0, 1, 4, 2, 3] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    dog = models.Filter(
        must=[models.FieldCondition(key="labels", match=models.MatchValue(value="dog"))]
    )
    assert _ids(filled.search("c", SearchRequest(query, limit=5, filter=dog))) == [0, 1, 4]
    wide = models.Filter(must=[models.FieldCondition(key="width", range=models.Range(gte=640))])
    assert set(_ids(filled.search("c", SearchRequest(query, limit=5, filter=wide)))) == {0, 2, 3, 4}
    recent = models.Filter(
        must=[
            models.FieldCondition(
                key="taken", range=models.DatetimeRange(gte="2020-01-01T00:00:00Z")
            )
        ]
    )
    assert _ids(filled.search("c", SearchRequest(query, limit=5, filter=recent))) == [0]
    assert _ids(filled.search("c", SearchRequest(query, limit=5, threshold=0.5))) == [0, 1, 4]
    page2 = filled.search("c", SearchRequest(query, limit=2, offset=2))
    assert _ids(page2) == [4, 2]
    on_dino = filled.search("c", SearchRequest(Nearest(_unit(1, 4), using="dino"), limit=1))
    assert _ids(on_dino) == [4]


def test_recommend_negatives_push_away(filled):
    plain = filled.search("c", SearchRequest(Recommend([_unit(1, 0.3, 0)]), limit=3))
    assert _ids(plain)[:2] == [1, 0]
    pushed = filled.search(
        "c", SearchRequest(Recommend([_unit(1, 0.3, 0)], negatives=[_unit(1, 0, 0)]), limit=5)
    )
    assert _ids(pushed)[0] in (2, 4) and _ids(pushed)[-1] == 0


def test_rank_fusion_in_one_query(filled):
    searches = [Nearest(_unit(1, 0, 0)), Nearest(_unit(0, 1, 0))]
    hits = filled.search("c", SearchRequest(RankFusion(searches, k=60), limit=5))
    assert sorted(_ids(hits)) == [0, 1, 2, 3, 4]
    assert _ids(hits)[-1] == 3  # last or tied-last in both lists
    assert hits[0].score < 1.0 / 30  # fused scores are reciprocal ranks, not cosines
    toward_first = RankFusion(searches, weights=[10.0, 1.0], k=1)
    assert _ids(filled.search("c", SearchRequest(toward_first, limit=1))) == [0]
    toward_second = RankFusion(searches, weights=[1.0, 10.0], k=1)
    assert _ids(filled.search("c", SearchRequest(toward_second, limit=1))) == [2]


def test_optimize_reports_the_index_and_keeps_results(filled):
    query = SearchRequest(Nearest(_unit(1, 0.2, 0)), limit=5)
    before = _ids(filled.search("c", query))
    status = filled.optimize("c")
    assert status.points == 5 and status.segments >= 1 and status.indexed_vectors >= 0
    assert "of 5 points" in status.describe()
    assert _ids(filled.search("c", query)) == before
    with pytest.raises(CollectionNotFound):
        filled.optimize("missing")


def test_edge_optimize_builds_hnsw_with_the_same_neighbours(tmp_path):
    """Above Qdrant's indexing threshold (10 MB of vectors) optimize builds a real HNSW index."""
    from pixseek.store.edge import EdgeStore

    store = EdgeStore(tmp_path / "edge")
    rng = np.random.default_rng(0)
    # 600 clusters of 10 (random 512-d points are all about equally far apart, so their
    # neighbour lists mean nothing): a query's top 10 is its cluster.
    centres = rng.standard_normal((600, 512)).astype(np.float32)
    noise = rng.standard_normal((6000, 512)).astype(np.float32)
    vectors = np.repeat(centres, 10, axis=0) + 0.5 * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.create_collection("big", {"clip": 512}, {})
    for start in range(0, len(vectors), 1000):
        store.upsert(
            "big",
            [PointRecord(_id(i), {"clip": vectors[i]}, {}) for i in range(start, start + 1000)],
        )
    queries = vectors[::300] + 0.05 * rng.standard_normal((20, 512)).astype(np.float32)

    def top10(q: np.ndarray) -> list[int]:
        return _ids(store.search("big", SearchRequest(Nearest(q), limit=10)))

    exact = [top10(q) for q in queries]
    assert store.get_collection("big").points == 6000
    status = store.optimize("big")
    assert status.changed and status.indexed_vectors == 6000 and status.points == 6000
    indexed = [top10(q) for q in queries]
    assert [hits[0] for hits in indexed] == list(range(0, 6000, 300))
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, indexed, strict=True)])
    assert overlap >= 0.9
    assert not store.optimize("big").changed  # nothing left to do
    store.close()
