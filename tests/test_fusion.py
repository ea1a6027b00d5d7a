"""Fusion strategies: the plans they build, and what both store backends return for them."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pixseek.search.fusion import FUSIONS, fuse, score_kind
from qdrant_client import models

from pixseek.errors import UserError
from pixseek.store.base import Nearest, PointRecord, RankFusion, SearchRequest

TEXT = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
# Two generated images that agree with each other, away from the text direction.
GENERATED = np.array([[0.0, 1.0, 0.1, 0.0], [0.0, 1.0, -0.1, 0.0]], dtype=np.float32)


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_text_is_the_plain_text_search():
    plan = fuse("text", TEXT * 3, {})
    assert isinstance(plan, Nearest) and plan.using == "clip"
    np.testing.assert_allclose(plan.vector, TEXT)
    assert score_kind(plan) == "cosine"


def test_generated_is_the_renormalised_mean_and_adds_dino_by_rrf():
    plan = fuse("generated", TEXT, {"clip": GENERATED})
    np.testing.assert_allclose(plan.vector, [0, 1, 0, 0], atol=1e-6)
    dino = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    plan = fuse("generated", TEXT, {"clip": GENERATED, "dino": dino})
    assert isinstance(plan, RankFusion) and [s.using for s in plan.searches] == ["clip", "dino"]
    np.testing.assert_allclose(plan.searches[1].vector, unit([1, 1, 0]), atol=1e-6)
    assert score_kind(plan) == "rrf"


def test_text_plus_mean_lets_disagreeing_images_count_less():
    agreeing = fuse("text+mean", TEXT, {"clip": GENERATED}).vector
    disagreeing = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, -0.6, 0.8, 0.0]], dtype=np.float32)
    mixed = fuse("text+mean", TEXT, {"clip": disagreeing}).vector
    np.testing.assert_allclose(agreeing, unit([1.0, 1.0, 0.0, 0.0]), atol=5e-3)
    assert float(mixed @ TEXT) > float(agreeing @ TEXT)  # the short centroid weighs less
    assert np.isclose(np.linalg.norm(mixed), 1.0)


def test_weighted_alpha_is_the_texts_share():
    assert np.allclose(fuse("weighted", TEXT, {"clip": GENERATED}, alpha=1.0).vector, TEXT)
    only_images = fuse("weighted", TEXT, {"clip": GENERATED}, alpha=0.0).vector
    np.testing.assert_allclose(only_images, [0, 1, 0, 0], atol=1e-6)
    half = fuse("weighted", TEXT, {"clip": GENERATED}, alpha=0.5).vector
    np.testing.assert_allclose(half, unit([1, 1, 0, 0]), atol=1e-6)


def test_rrf_is_one_query_with_a_prefetch_per_vector():
    dino = np.eye(3, dtype=np.float32)[:2]
    plan = fuse("rrf", TEXT, {"clip": GENERATED, "dino": dino}, alpha=0.9)
    assert isinstance(plan, RankFusion) and plan.weights is None and plan.k == 60
    assert [s.using for s in plan.searches] == ["clip", "clip", "clip", "dino", "dino"]
    np.testing.assert_allclose(plan.searches[0].vector, TEXT)
    np.testing.assert_allclose(plan.searches[1].vector, unit(GENERATED[0]))


@pytest.mark.parametrize(
    ("fusion", "generated", "alpha", "message"),
    [
        ("median", {"clip": GENERATED}, 0.5, "unknown fusion 'median'"),
        ("weighted", {"clip": GENERATED}, 1.5, "between 0 and 1"),
        ("rrf", {}, 0.5, "needs the generated images' CLIP embeddings"),
        ("generated", {"clip": np.zeros((0, 4))}, 0.5, "at least one generated image"),
        ("text+mean", {"clip": -TEXT[None, :]}, 0.5, "fused query vector is zero"),
    ],
)
def test_bad_fusions_are_one_line_errors(fusion, generated, alpha, message):
    with pytest.raises(UserError, match=message):
        fuse(fusion, TEXT, generated, alpha)


@pytest.fixture
def populated(store):
    """Points near the text (t*), near the generated images (g*), and in between (mid)."""
    store.create_collection("fusion", {"clip": 4, "dino": 3}, {})
    rng = np.random.default_rng(0)
    named = {
        "t1": [1.0, 0.05, 0.0, 0.1],
        "t2": [1.0, 0.0, 0.1, 0.2],
        "g1": [0.05, 1.0, 0.0, 0.1],
        "g2": [0.0, 1.0, 0.1, 0.2],
        "mid": [1.0, 1.0, 0.0, 0.0],
    }
    points, ids = [], {}
    for index, (name, vector) in enumerate(named.items()):
        ids[name] = str(uuid.UUID(int=index + 1))
        dino = [1.0, 0.0, 0.0] if name.startswith("g") else [0.0, 0.0, 1.0]
        labels = ["dog"] if name in ("t2", "g2", "mid") else ["cat"]
        points.append(PointRecord(ids[name], {"clip": vector, "dino": dino}, {"labels": labels}))
    for index in range(30):  # distractors, facing away from the text and the generated images
        vector = [-1.0, -1.0, *rng.normal(size=2)]
        dino = [-1.0, *rng.normal(size=2)]
        point_id = str(uuid.UUID(int=1000 + index))
        points.append(PointRecord(point_id, {"clip": vector, "dino": dino}, {"i": index}))
    store.upsert("fusion", points)
    names = {value: key for key, value in ids.items()}
    return store, names


def top(store, names, plan, limit=3, **kwargs) -> list[str]:
    hits = store.search("fusion", SearchRequest(plan, limit, **kwargs))
    return [names.get(hit.id, "other") for hit in hits]


def test_fusions_rank_as_designed_on_both_backends(populated):
    store, names = populated
    generated = {"clip": GENERATED, "dino": np.array([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0]])}
    assert top(store, names, fuse("text", TEXT, generated))[:2] == ["t1", "t2"]
    assert top(store, names, fuse("generated", TEXT, {"clip": GENERATED}))[:2] == ["g1", "g2"]
    assert top(store, names, fuse("text+mean", TEXT, generated), 1) == ["mid"]
    assert top(store, names, fuse("weighted", TEXT, generated, alpha=0.5), 1) == ["mid"]
    fused = top(store, names, fuse("rrf", TEXT, {"clip": GENERATED}), 5)
    assert set(fused) == {"t1", "t2", "g1", "g2", "mid"}
    # DINOv2 lists vote for what looks like the generated images (only g* are near in dino).
    assert set(top(store, names, fuse("rrf", TEXT, generated), 2)) == {"g1", "g2"}
    hits = store.search("fusion", SearchRequest(fuse("rrf", TEXT, generated), 5))
    assert all(0 < hit.score < 1 for hit in hits)  # RRF scores, not cosines


def test_filters_and_thresholds_apply_to_every_fusion(populated):
    store, names = populated
    generated = {"clip": GENERATED}
    dogs = models.Filter(
        must=[models.FieldCondition(key="labels", match=models.MatchValue(value="dog"))]
    )
    for fusion in FUSIONS:
        found = top(store, names, fuse(fusion, TEXT, generated), 10, filter=dogs)
        assert set(found) <= {"t2", "g2", "mid"} and found, fusion
    near_text = top(store, names, fuse("rrf", TEXT, generated), 10, threshold=0.9)
    assert set(near_text) == {"t1", "t2", "g1", "g2"}  # each prefetch keeps its close points
