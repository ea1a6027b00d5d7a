"""The API's steering routes over coco_mini (issue 21): feedback, diversity and cutoff in /search,
facets, browse and one point's detail."""

from __future__ import annotations

from collections import Counter

from tests import test_api
from tests.test_api import LABELS, error, ok, search

api_env = test_api.api_env
client = test_api.client


def test_feedback_diversity_and_cutoff_in_search(client):
    first = ok(search(client, q="people", limit=10))["hits"]
    good, bad = first[6]["id"], first[0]["id"]
    steered = ok(search(client, q="people", limit=10, feedback={"good": [good], "bad": [bad]}))
    ids = [h["id"] for h in steered["hits"]]
    assert ids.index(good) < 6 and "2 marked" not in steered["query"]
    assert "1 marked good" in steered["query"] and "1 marked bad" in steered["query"]
    diverse = ok(search(client, q="people", limit=10, diversity=0.7))["hits"]
    assert diverse[0]["id"] == first[0]["id"]
    cut = ok(search(client, q="people", limit=50, cutoff="gap:0.0001"))
    assert len(cut["hits"]) < 50 and "gap:0.0001" in cut["ended_by"] and cut["next_offset"] is None
    assert "gap:MARGIN" in error(search(client, q="people", cutoff="best:2"), 422)
    assert "both good and bad" in error(
        search(client, q="people", feedback={"good": [good], "bad": [good]}), 422
    )
    assert search(client, q="people", diversity=2).status_code == 422


def test_facets_browse_and_point_detail(client):
    facets = ok(client.get("/collections/coco/facets"))
    expected = Counter(label for row in LABELS.values() for label in row.get("labels") or [])
    assert facets["facets"]["labels"] == dict(expected) and facets["matching"] == 239
    dogs = ok(client.get("/collections/coco/facets", params={"where": "label=dog"}))
    assert dogs["matching"] == expected["dog"] == dogs["facets"]["labels"]["dog"]
    page = ok(client.get("/collections/coco/browse", params={"limit": 10}))
    mtimes = [h["payload"]["mtime"] for h in page["hits"]]
    assert mtimes == sorted(mtimes, reverse=True) and page["next_offset"] == 10
    filtered = ok(client.get("/collections/coco/browse", params={"where": "label=dog"}))
    assert filtered["hits"] and all("dog" in h["payload"]["labels"] for h in filtered["hits"])
    detail = ok(client.get(f"/collections/coco/points/{page['hits'][0]['id']}"))
    assert detail["payload"]["source"] == page["hits"][0]["payload"]["source"]
    assert detail["image_url"].endswith(page["hits"][0]["id"]) and "duplicates" in detail
    assert "not a point id" in error(client.get("/collections/coco/points/nope"), 422)
    missing = "00000000-0000-0000-0000-000000000001"
    assert "not in collection" in error(client.get(f"/collections/coco/points/{missing}"), 404)
    assert "nosuch" in error(client.get("/collections/nosuch/facets"), 404)
