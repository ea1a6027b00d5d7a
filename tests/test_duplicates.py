"""Duplicate tiers, keeper rule and the store operations behind them, on both store backends.

Hand-made points: hashes with a known number of flipped bits and CLIP vectors at known angles,
so every expected group follows from the thresholds.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pixseek.search.duplicates import DuplicateOptions, choose_keeper, find_duplicates

from pixseek.phash import PHASH_VECTOR, hamming, score_for_distance, to_hex, to_vector
from pixseek.store import Nearest, PointRecord, SearchRequest

BASE = 0x9F3A_5C71_E28B_0D46


def flip(value: int, bits: int, start: int = 0) -> int:
    """`value` with bits start .. start+bits-1 inverted."""
    return value ^ (((1 << bits) - 1) << start)


def unit(*values: float) -> list[float]:
    v = np.asarray(values + (0.0,) * (8 - len(values)), dtype=np.float64)
    return (v / np.linalg.norm(v)).tolist()


def point(name: str, hash_value: int | None, clip: list[float], **payload) -> PointRecord:
    vectors = {"clip": clip}
    data = {"source": f"{name}.jpg", "root": "/nowhere", "width": 100, "height": 100, **payload}
    if hash_value is not None:
        vectors[PHASH_VECTOR] = to_vector(hash_value)
        data[PHASH_VECTOR] = to_hex(hash_value)
    return PointRecord(str(uuid.uuid5(uuid.NAMESPACE_URL, name)), vectors, data)


def ids_by_source(report) -> list[set[str]]:
    return [{p["source"].removesuffix(".jpg") for p in g.points} for g in report.groups]


@pytest.fixture
def near_collection(store):
    store.create_collection("c", {"clip": 8, PHASH_VECTOR: 64}, {})
    store.upsert(
        "c",
        [
            point("a", BASE, unit(1, 0.05), width=640, height=480),
            point("a_small", flip(BASE, 3), unit(1, 0.1), width=320, height=240),
            point("a_crop", flip(BASE, 10, 3), unit(1, 0.2), width=600, height=450),
            point("far", flip(BASE, 11, 20), unit(1, 0.15)),  # one bit past the threshold
            point("lookalike", flip(BASE, 2, 40), unit(0, 1)),  # hash close, CLIP disagrees
            point("other", BASE ^ 0xFFFF_FFFF_0000_0000, unit(0, 0, 1)),
            point("unhashed", None, unit(1)),
        ],
    )
    return store


def test_phash_vector_score_is_hamming():
    a, b = BASE, flip(BASE, 7, 30)
    dot = float(np.dot(to_vector(a), to_vector(b)))
    assert hamming(a, b) == 7
    assert dot == 64 - 2 * 7
    assert 1 - 7 / 32 >= score_for_distance(7) > 1 - 8 / 32


def test_near_tier_hash_threshold_and_clip_confirmation(near_collection):
    report = find_duplicates(near_collection, "c", DuplicateOptions(tier="near"))
    assert ids_by_source(report) == [{"a", "a_small", "a_crop"}]
    assert report.unhashed == 1 and report.points == 7
    group = report.groups[0]
    assert group.points[0]["source"] == "a.jpg" and group.keep == group.points[0]["id"]
    assert group.reason == "largest (640x480 px)"
    assert {p["source"]: p["distance"] for p in group.points} == {
        "a.jpg": 0,
        "a_small.jpg": 3,
        "a_crop.jpg": 10,
    }

    unconfirmed = find_duplicates(near_collection, "c", DuplicateOptions(confirm=None))
    assert ids_by_source(unconfirmed) == [{"a", "a_small", "a_crop", "lookalike"}]
    strict = find_duplicates(near_collection, "c", DuplicateOptions(max_distance=3))
    assert ids_by_source(strict) == [{"a", "a_small"}]


def test_near_tier_respects_filters(near_collection):
    from pixseek.search.filters import compile_filters

    options = DuplicateOptions(filter=compile_filters(["width<=400"]))
    report = find_duplicates(near_collection, "c", options)
    assert report.groups == []  # a_small's partners are outside the filter


def test_exact_tier_groups_same_bytes(store):
    store.create_collection("e", {"clip": 8}, {})
    store.upsert(
        "e",
        [
            point("x/long/path/copy", None, unit(1), sha256="aa", mtime=100.0),
            point("copy", None, unit(1), sha256="aa", mtime=100.0),
            point("older", None, unit(1), sha256="aa", mtime=50.0),
            point("single", None, unit(1), sha256="bb"),
        ],
    )
    report = find_duplicates(store, "e", DuplicateOptions(tier="exact"))
    assert ids_by_source(report) == [{"x/long/path/copy", "copy", "older"}]
    assert report.groups[0].points[0]["source"] == "older.jpg"
    assert report.groups[0].reason == "oldest (file mtime)"


def test_similar_tier_with_time_window(store):
    store.create_collection("s", {"clip": 8}, {})
    store.upsert(
        "s",
        [
            point("burst1", None, unit(1, 0.1), taken="2024-05-01T10:00:00Z"),
            point("burst2", None, unit(1, 0.2), taken="2024-05-01T10:00:04Z"),
            point("next_day", None, unit(1, 0.15), taken="2024-05-02T10:00:00Z"),
            point("unrelated", None, unit(0, 1), taken="2024-05-01T10:00:02Z"),
        ],
    )
    report = find_duplicates(store, "s", DuplicateOptions(tier="similar", similarity=0.95))
    assert ids_by_source(report) == [{"burst1", "burst2", "next_day"}]
    windowed = DuplicateOptions(tier="similar", similarity=0.95, time_window=60)
    assert ids_by_source(find_duplicates(store, "s", windowed)) == [{"burst1", "burst2"}]


def test_keeper_rule_pixels_then_age_then_path():
    points = {
        "1": {"width": 100, "height": 100, "source": "a/b/c.jpg", "mtime": 1.7e9},
        "2": {"width": 200, "height": 100, "source": "a/b/c/d.jpg", "mtime": 1.8e9},
    }
    assert choose_keeper(points) == ("2", "largest (200x100 px)")
    points["1"]["width"] = 200
    assert choose_keeper(points) == ("1", "oldest (file mtime)")
    points["2"]["taken"] = "1999-01-01T00:00:00Z"
    assert choose_keeper(points) == ("2", "oldest (taken 1999-01-01T00:00:00Z)")
    del points["2"]["taken"]
    points["2"]["mtime"] = 1.7e9
    assert choose_keeper(points) == ("1", "shortest path")


def test_store_adds_a_vector_and_searches_in_batches(store):
    store.create_collection("v", {"clip": 8}, {"models": {"clip": "m"}})
    records = [point(f"p{i}", None, unit(1, i / 10)) for i in range(5)]
    store.upsert("v", records)
    assert store.add_vector("v", PHASH_VECTOR, 64) is True
    assert store.add_vector("v", PHASH_VECTOR, 64) is False
    info = store.get_collection("v")
    assert info.vectors == {"clip": 8, PHASH_VECTOR: 64} and info.points == 5
    assert info.metadata.get("models") == {"clip": "m"}
    store.update_vectors(
        "v", {r.id: {PHASH_VECTOR: to_vector(flip(BASE, i))} for i, r in enumerate(records)}
    )
    requests = [
        SearchRequest(
            Nearest(to_vector(BASE), using=PHASH_VECTOR), limit=10, threshold=score_for_distance(2)
        ),
        SearchRequest(Nearest(unit(1), using="clip"), limit=2),
    ]
    near, clip = store.search_batch("v", requests, fields=["source"], exact=True)
    assert [h.payload["source"] for h in near] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert [h.payload for h in clip] == [{"source": "p0.jpg"}, {"source": "p1.jpg"}]
    # the payload and the other vectors survived
    back = store.retrieve("v", [records[3].id], with_vectors=True)[0]
    assert back.payload["source"] == "p3.jpg"
    assert np.allclose(back.vectors["clip"], records[3].vectors["clip"], atol=1e-6)


def test_near_tier_without_hashes_says_what_to_run(store):
    from pixseek.errors import Misconfigured

    store.create_collection("old", {"clip": 8}, {})
    with pytest.raises(Misconfigured, match="--update-hashes"):
        find_duplicates(store, "old", DuplicateOptions())
