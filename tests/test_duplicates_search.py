"""`--collapse near` (engine, CLI, API) and GET /collections/{name}/duplicates.

The engine is driven with hand-made vectors on both store backends; the CLI and the API run on
real images ingested with the tiny random CLIP.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pixseek.search.engine import PlannedSearch, execute, run_search
from pixseek.search.query import QueryInput, build_query

from pixseek.errors import InputError
from pixseek.phash import PHASH_VECTOR, to_hex, to_vector
from pixseek.store import Nearest, PointRecord
from tests.conftest import json_lines
from tests.test_duplicates_cli import archive  # noqa: F401 (fixture)

H1, H2 = 0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210


def _points() -> list[PointRecord]:
    """Ranked by cosine to (1, 0): a1 > a2 > b1 > a3 > b2 > c; a* and b* are near groups."""
    rows = [
        ("a1", H1, 0.0),
        ("a2", H1 ^ 0b111, 0.1),
        ("b1", H2, 0.2),
        ("a3", H1 ^ 1 << 40, 0.3),
        ("b2", H2 ^ 0b11, 0.4),
        ("c", None, 0.5),
    ]
    records = []
    for name, value, angle in rows:
        vectors = {"clip": [float(np.cos(angle)), float(np.sin(angle))]}
        payload = {"source": name}
        if value is not None:
            vectors[PHASH_VECTOR] = to_vector(value)
            payload[PHASH_VECTOR] = to_hex(value)
        records.append(PointRecord(str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), vectors, payload))
    return records


def test_collapse_near_one_hit_per_group_with_sizes(store):
    store.create_collection("c", {"clip": 2, PHASH_VECTOR: 64}, {})
    store.upsert("c", _points())
    planned = PlannedSearch(Nearest([1.0, 0.0]), 1.0, None, "test")
    plain = execute(store, "c", planned, limit=6)
    assert [h.payload["source"] for h in plain] == ["a1", "a2", "b1", "a3", "b2", "c"]
    assert all(h.group_size is None for h in plain)

    hits = execute(store, "c", planned, limit=10, collapse="near")
    assert [(h.payload["source"], h.group_size) for h in hits] == [("a1", 3), ("b1", 2), ("c", 1)]
    assert hits[0].score == pytest.approx(plain[0].score)
    page = execute(store, "c", planned, limit=1, offset=1, collapse="near")
    assert [(h.payload["source"], h.group_size) for h in page] == [("b1", 2)]


def test_collapse_needs_hashes(store):
    store.create_collection("plain", {"clip": 2}, {})
    store.upsert("plain", [PointRecord(str(uuid.uuid4()), {"clip": [1.0, 0.0]}, {})])
    any_id = next(iter(store.scroll("plain"))).id
    spec = build_query(QueryInput(likes=(any_id,)))
    with pytest.raises(InputError, match="--update-hashes"):
        run_search(store, None, "plain", spec, collapse="near")


def test_cli_search_collapse_and_api(cli, pixseek_env, archive):  # noqa: F811
    from fastapi.testclient import TestClient
    from pixseek.api.app import create_app

    from pixseek.config import load_settings

    assert cli("ingest", archive, "-c", "photos")[0] == 0
    code, out, _ = cli("search", "a photo", "-c", "photos", "--json", "-k", "10")
    assert len(json_lines(out)) == 7
    code, out, err = cli("search", "a photo", "-c", "photos", "--json", "--collapse", "near")
    assert code == 0, err
    collapsed = json_lines(out)
    assert sorted(h["group_size"] for h in collapsed) == [1, 2, 2, 2]
    code, out, _ = cli("search", "a photo", "-c", "photos", "--collapse", "near")
    assert out.count("(+1 near duplicate)") == 3

    with TestClient(create_app(load_settings())) as client:
        body = {"collection": "photos", "q": "a photo", "collapse": "near"}
        hits = client.post("/search", json=body).json()["hits"]
        assert sorted(h["group_size"] for h in hits) == [1, 2, 2, 2]
        plain = client.post("/search", json={**body, "collapse": None}).json()["hits"]
        assert len(plain) == 7 and all(h["group_size"] is None for h in plain)
        assert client.post("/search", json={**body, "collapse": "far"}).status_code == 422

        report = client.get("/collections/photos/duplicates", params={"no_confirm": True})
        assert report.status_code == 200, report.text
        data = report.json()
        assert data["groups_total"] == 3 and data["duplicates"] == 3 and data["points"] == 7
        sizes = {frozenset(p["source"] for p in g["points"]) for g in data["groups"]}
        assert frozenset({"p0.jpg", "p0_half.jpg"}) in sizes
        first = data["groups"][0]
        assert first["keep"] == first["points"][0]["id"] and first["reason"]
        assert client.get(first["points"][1]["thumbnail_url"]).status_code == 200
        paged = client.get(
            "/collections/photos/duplicates", params={"no_confirm": True, "limit": 2}
        ).json()
        assert len(paged["groups"]) == 2 and paged["next_offset"] == 2
        exact = client.get("/collections/photos/duplicates", params={"tier": "exact"}).json()
        assert exact["groups_total"] == 1
        assert client.get("/collections/nope/duplicates").status_code == 404
        bad = client.get("/collections/photos/duplicates", params={"threshold": 2.5})
        assert bad.status_code == 422 and "\n" not in bad.json()["detail"]


def test_server_store_refuses_a_new_vector_during_an_index_build(tmp_path):
    from pixseek.api.indexer import BackgroundIndexer, IndexedStore

    from pixseek.errors import StoreBusy
    from pixseek.store.edge import EdgeStore

    edge = EdgeStore(tmp_path / "edge")
    edge.create_collection("c", {"clip": 2}, {})
    (tmp_path / "server").mkdir()
    indexer = BackgroundIndexer(edge, tmp_path / "server")  # not started: the build stays queued
    store = IndexedStore(edge, indexer)
    indexer.request("c")
    with pytest.raises(StoreBusy, match="building the vector index"):
        store.add_vector("c", PHASH_VECTOR, 64)
    edge.create_collection("d", {"clip": 2}, {})
    assert store.add_vector("d", PHASH_VECTOR, 64) is True
