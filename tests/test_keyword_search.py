"""The keyword index and keyword / hybrid search on both store backends (no model needed: the
dense side uses stored points as queries)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pixseek.search.engine import run_search
from pixseek.search.filters import compile_filters
from pixseek.search.query import QueryInput, build_query, parse_query_text

from pixseek.errors import UserError
from pixseek.keywords import file_name_words, keyword_text, with_keywords
from pixseek.store.base import CLIP_VECTOR, TEXT_VECTOR, PointRecord
from tests.test_api import api_env  # noqa: F401  (the shared coco collection)

DOCS = {
    "exit": {"source": "road/IMG_01.jpg", "ocr": "EXIT 12\nHarbour Road", "labels": ["car"]},
    "cafe": {"source": "town/CoffeeShop.jpg", "ocr": "Coffee shop - open", "labels": []},
    "beach": {"source": "beach.jpg", "captions": ["a dog running on the beach"], "labels": ["dog"]},
    "plain": {"source": "x/0001.png", "labels": []},
    "exitish": {"source": "exit-only.jpg", "labels": []},  # the word only in the file name
}


def _ids() -> dict[str, str]:
    return {name: str(uuid.uuid5(uuid.NAMESPACE_URL, name)) for name in DOCS}


@pytest.fixture
def collection(store):
    store.create_collection("kw", {CLIP_VECTOR: 4}, {})
    ids = _ids()
    # Dense order from "beach": plain, exitish, exit, cafe (last: it faces away).
    clip = {
        "beach": [1, 0, 0, 0],
        "plain": [0.9, 0.1, 0, 0],
        "exitish": [0.6, 0.6, 0, 0],
        "exit": [0.1, 0.9, 0, 0],
        "cafe": [-1, 0, 0.1, 0],
    }
    points = [
        with_keywords(PointRecord(ids[name], {CLIP_VECTOR: np.array(clip[name])}, dict(payload)))
        for name, payload in DOCS.items()
    ]
    store.upsert("kw", points)
    return store, ids


def test_keyword_text_gathers_ocr_captions_labels_and_file_name():
    assert file_name_words("holidays/IMG_2041-BeachSunset.jpg") == [
        "IMG",
        "2041",
        "Beach",
        "Sunset",
    ]
    text = keyword_text(
        {"ocr": "EXIT 12", "captions": ["a dog"], "labels": ["car"], "source": "a_b.jpg"}
    )
    assert text.split("\n") == ["EXIT 12", "a dog", "car", "a b"]
    point = with_keywords(PointRecord("p", {}, {"source": "0001.png"}))
    assert TEXT_VECTOR in point.vectors  # "0001" is a token
    assert with_keywords(PointRecord("p", {}, {})).vectors == {}  # nothing to index


def test_new_collections_have_the_keyword_index(collection):
    store, _ = collection
    assert store.get_collection("kw").sparse_vectors == [TEXT_VECTOR]


def test_keyword_mode_ranks_by_bm25(collection):
    store, ids = collection
    hits = run_search(store, None, "kw", parse_query_text("harbour"), mode="keyword")
    assert [h.id for h in hits] == [ids["exit"]]
    hits = run_search(store, None, "kw", parse_query_text("exit"), mode="keyword")
    assert {h.id for h in hits} == {ids["exit"], ids["exitish"]}  # OCR text and file name
    hits = run_search(store, None, "kw", parse_query_text("coffee"), mode="keyword")
    assert hits[0].id == ids["cafe"]  # "CoffeeShop.jpg" and the OCR text
    hits = run_search(store, None, "kw", parse_query_text("dogs"), mode="keyword")
    assert [h.id for h in hits] == [ids["beach"]]  # stemmed caption and label


def test_ocr_term_requires_the_words_in_the_ocr_text(collection):
    store, ids = collection
    hits = run_search(store, None, "kw", parse_query_text('ocr:"exit 12"'))
    assert [h.id for h in hits] == [ids["exit"]]  # not exit-only.jpg: its word is a file name
    hits = run_search(store, None, "kw", parse_query_text('text:"exit"'))
    assert {h.id for h in hits} == {ids["exit"], ids["exitish"]}
    with pytest.raises(UserError, match="keyword terms"):
        run_search(store, None, "kw", parse_query_text("ocr:exit"), mode="dense")


def test_where_ocr_word_is_a_full_text_filter(collection):
    store, ids = collection
    spec = build_query(QueryInput(likes=[ids["plain"]]))
    for where, expected in [
        ("ocr~harbour", {"exit"}),  # one word, any case
        ("ocr~EXIT 12", {"exit"}),
        ("ocr!~exit", {"cafe", "beach", "exitish"}),
        ("text~exit", {"exit", "exitish"}),
        ("ocr~harbor", set()),
    ]:
        hits = run_search(store, None, "kw", spec, filter=compile_filters([where]), limit=10)
        assert {name for name, i in ids.items() if i in {h.id for h in hits}} == expected, where


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_hybrid_fuses_dense_and_keyword_in_one_query(collection, fusion):
    store, ids = collection
    # Dense side: "more like the beach photo" (its own point is excluded); keyword side: coffee.
    spec = build_query(QueryInput(words=['text:"coffee"'], likes=[ids["beach"]]))
    hits = run_search(store, None, "kw", spec, limit=4, fusion=fusion)
    dense = run_search(store, None, "kw", build_query(QueryInput(likes=[ids["beach"]])), limit=4)
    assert [h.id for h in dense] == [ids[n] for n in ("plain", "exitish", "exit", "cafe")]
    assert ids["beach"] not in {h.id for h in hits}
    assert len(hits) == 4  # the dense prefetch brings the rest
    if fusion == "rrf":  # 1/61 + 1/64 (both lists) beats 1/61 (dense only)
        assert hits[0].id == ids["cafe"]
    assert [h.id for h in hits].index(ids["cafe"]) < 3  # pulled up from last by BM25


def test_mode_errors_are_one_line(collection):
    store, ids = collection
    with pytest.raises(UserError, match="threshold"):
        run_search(store, None, "kw", parse_query_text("exit"), mode="keyword", threshold=0.2)
    with pytest.raises(UserError, match="needs query words"):
        run_search(store, None, "kw", build_query(QueryInput(likes=[ids["beach"]])), mode="keyword")
    with pytest.raises(UserError, match="no searchable word"):
        run_search(store, None, "kw", parse_query_text("the"), mode="keyword")


def test_older_collections_get_the_index_added(store):
    from pixseek.ingest.enrich import run_enrich

    _create_without_index(store, "old")  # as made before the keyword index existed
    point_id = str(uuid.uuid4())
    store.upsert(
        "old", [PointRecord(point_id, {CLIP_VECTOR: [1.0, 0, 0, 0]}, {"source": "ferry.jpg"})]
    )
    assert store.get_collection("old").sparse_vectors == []
    summary = run_enrich(store, "old", engine=None)  # keywords only, no OCR
    assert summary.index_added and summary.keywords_refreshed == 1
    assert store.get_collection("old").sparse_vectors == [TEXT_VECTOR]
    hits = run_search(store, None, "old", parse_query_text("ferry"), mode="keyword")
    assert [h.id for h in hits] == [point_id]
    assert run_enrich(store, "old", engine=None).already_done == 1  # incremental


def _create_without_index(store, name: str) -> None:
    import json

    import qdrant_edge as qe
    from qdrant_client import models

    from pixseek.store.edge import EdgeStore

    if isinstance(store, EdgeStore):
        directory = store.root / name
        directory.mkdir(parents=True)
        params = qe.EdgeVectorParams(size=4, distance=qe.Distance.Cosine)
        config = qe.EdgeConfig(vectors={CLIP_VECTOR: params})
        qe.EdgeShard.create(str(directory / "shard"), config).close()
        meta = {"vectors": {CLIP_VECTOR: 4}, "metadata": {}}
        (directory / "pixseek.json").write_text(json.dumps(meta))
    else:
        params = models.VectorParams(size=4, distance=models.Distance.COSINE)
        store.client.create_collection(name, vectors_config={CLIP_VECTOR: params})


def test_api_mode_field_keyword_and_hybrid(api_env):  # noqa: F811 (fixture)
    """coco_mini through the HTTP API: captions and labels are in the keyword index at ingest."""
    from tests.test_api import make_client

    with make_client(api_env) as client:
        body = {"collection": "coco", "q": "giraffe", "mode": "keyword", "limit": 5}
        response = client.post("/search", json=body)
        assert response.status_code == 200, response.text
        hits = response.json()["hits"]
        assert hits and all("giraffe" in h["payload"]["keywords"].lower() for h in hits)
        assert all(h["payload"]["keywords"] for h in hits)
        body = {**body, "mode": "hybrid", "hybrid_fusion": "dbsf"}
        assert client.post("/search", json=body).status_code == 200
        body = {**body, "mode": "keyword", "threshold": 0.1}
        response = client.post("/search", json=body)
        assert response.status_code == 422 and "threshold" in response.json()["detail"]
        response = client.post("/search", json={**body, "mode": "sparse"})
        assert response.status_code == 422


def test_eval_runs_dense_keyword_and_hybrid_side_by_side(api_env):  # noqa: F811 (fixture)
    from pixseek.evaluation.queries import EvalQuery
    from pixseek.evaluation.runner import parse_strategies, run_eval

    from pixseek.config import load_settings

    strategies = parse_strategies("text,dense,keyword,hybrid")
    queries = [EvalQuery(id=w, text=w, label=w) for w in ("giraffe", "elephant", "zebra", "pizza")]
    run = run_eval(load_settings(api_env), "coco", queries, strategies, [5])
    mean = {s: sum(r.metrics[s]["P@5"] for r in run.evaluated()) / 4 for s in strategies}
    assert mean["dense"] == mean["text"]  # dense is the baseline's ranking, named as a mode
    # Labels and captions are in the keyword index; the CLIP model here has random weights.
    assert mean["keyword"] >= 0.6 > mean["text"]
    assert mean["hybrid"] > mean["text"]


def test_damaged_ocr_words_are_still_found_exact_ones_first(collection):
    store, ids = collection
    damaged, exact = str(uuid.uuid4()), str(uuid.uuid4())
    points = [  # OCR clipped a letter / dropped a space; the other image reads "aspen" right
        with_keywords(PointRecord(damaged, {CLIP_VECTOR: [0, 0, 1, 0]}, {"ocr": "podember aspe"})),
        with_keywords(PointRecord(exact, {CLIP_VECTOR: [0, 0, 0, 1]}, {"ocr": "aspen grove"})),
    ]
    store.upsert("kw", points)
    hits = run_search(store, None, "kw", parse_query_text("aspen"), mode="keyword")
    assert [h.id for h in hits[:2]] == [exact, damaged]
    hits = run_search(store, None, "kw", parse_query_text("ember"), mode="keyword")
    assert hits[0].id == damaged  # inside "podember"
    hits = run_search(store, None, "kw", parse_query_text("harbour"), mode="keyword")
    assert [h.id for h in hits] == [ids["exit"]]  # no trigram noise for an exact word
