"""Relevance feedback, MMR and cutoffs through the search engine, on both backends (issue 21)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pixseek.search.cutoff import Cutoff, parse_cutoff
from pixseek.search.engine import search_page
from pixseek.search.query import QueryInput, build_query

from pixseek.errors import InputError
from pixseek.store import PointRecord


def _id(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def _num(point_id: str) -> int:
    return uuid.UUID(point_id).int - 1


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def fans(store):
    """Point 0 is the query; 1-10 lean towards axis 1 ("good" side), 11-20 towards axis 2."""
    rows = {0: _unit([1, 0, 0, 0])}
    for i in range(1, 11):
        rows[i] = _unit([1, 0.05 * i, 0, 0])
    for i in range(11, 21):
        rows[i] = _unit([1, 0, 0.05 * (i - 10) + 0.025, 0])
    store.create_collection("c", {"clip": 4}, {})
    store.upsert(
        "c",
        [PointRecord(_id(i), {"clip": v}, {"source": f"{i}.jpg"}) for i, v in rows.items()],
    )
    return store, rows


def _search(store, **given):
    marks = {k: given.pop(k) for k in ("good", "bad") if k in given}
    spec = build_query(QueryInput(likes=[_id(0)], **marks))
    return search_page(store, None, "c", spec, limit=given.pop("limit", 20), **given)


def _rank(page, n: int) -> int:
    return [_num(h.id) for h in page.hits].index(n)


def test_feedback_moves_good_like_up_and_bad_like_down(fans):
    store, _ = fans
    before = _search(store)
    after = _search(store, good=[_id(10)], bad=[_id(20)])
    good_side, bad_side = range(1, 11), range(11, 21)
    # Before, the two sides interleave by angle; after, the query has moved towards the good
    # mark: the good side rises as a whole (its first points lead), the bad side sinks.
    order = [_num(h.id) for h in before.hits]
    assert order[:4] == [1, 11, 2, 12]
    ranked = [_num(h.id) for h in after.hits]
    assert set(ranked[:9]) <= set(good_side)
    assert sum(_rank(after, n) for n in good_side) < sum(_rank(before, n) for n in good_side)
    assert sum(_rank(after, n) for n in bad_side) > sum(_rank(before, n) for n in bad_side)
    assert _rank(after, 10) < _rank(before, 10) and _rank(after, 20) >= _rank(before, 20)
    assert {10, 20} <= {_num(h.id) for h in after.hits}
    assert 0 not in {_num(h.id) for h in after.hits}  # the --like example is still left out
    assert after.hits[0].score <= 1.0 + 1e-5  # scores stay cosine similarities


def test_feedback_needs_something_to_steer(fans):
    store, _ = fans
    with pytest.raises(InputError, match="both good and bad"):
        build_query(QueryInput(likes=[_id(0)], good=[_id(1)], bad=[_id(1)]))
    with pytest.raises(InputError, match="nothing to search for"):
        build_query(QueryInput(bad=[_id(3)]))  # a bad mark alone steers nothing
    with pytest.raises(InputError, match="not in collection"):
        _search(store, good=[_id(99)])
    good_only = search_page(store, None, "c", build_query(QueryInput(good=[_id(10)])), limit=3)
    assert _num(good_only.hits[0].id) == 10  # a good mark alone is "more like this"


def test_diversity_keeps_the_top_hit_and_pages(fans):
    store, _ = fans
    plain = _search(store, limit=10)
    diverse = _search(store, limit=10, diversity=0.8)
    assert diverse.hits[0].id == plain.hits[0].id
    assert [h.id for h in diverse.hits] != [h.id for h in plain.hits]
    page2 = _search(store, limit=5, diversity=0.8, offset=5)
    assert [h.id for h in page2.hits] == [h.id for h in diverse.hits[5:10]]
    with pytest.raises(InputError, match="between 0"):
        _search(store, diversity=1.5)


def test_gap_cutoff_ends_the_list_where_documented(fans):
    store, rows = fans
    page = _search(store, cutoff=Cutoff("gap", 0.01))
    top = page.hits[0].score
    assert all(h.score >= top - 0.01 for h in page.hits)
    scores = sorted((float(rows[i] @ rows[0]) for i in range(1, 21)), reverse=True)
    assert len(page.hits) == sum(s >= top - 0.01 for s in scores)
    assert page.ended_by and "gap:0.01" in page.ended_by
    whole = _search(store, cutoff=Cutoff("gap", 1.0))
    assert len(whole.hits) == 20 and whole.ended_by is None
    second = _search(store, cutoff=Cutoff("gap", 0.01), limit=2, offset=2)
    assert [h.id for h in second.hits] == [h.id for h in page.hits[2:4]]


def test_z_cutoff_uses_the_background(fans):
    store, _ = fans
    page = _search(store, cutoff=Cutoff("z", 1.0))
    assert 0 < len(page.hits) < 20 and "background mean" in (page.ended_by or "")
    assert parse_cutoff("z:3") == Cutoff("z", 3.0)
    with pytest.raises(InputError, match="gap:MARGIN"):
        parse_cutoff("top:3")
