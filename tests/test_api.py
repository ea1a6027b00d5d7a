"""The HTTP API in-process (FastAPI TestClient) over the embedded store and the tiny random CLIP.

coco_mini is ingested once per session; the model is random, so rankings are meaningless and the
tests check the plumbing: every route, the same results as the CLI, errors, limits, auth, and that
no path from a request reaches the filesystem.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import COCO, json_lines

IMAGE = COCO / "val2017" / "000000000139.jpg"
LABELS = {
    row["filename"]: row
    for row in map(json.loads, (COCO / "labels.jsonl").read_text().splitlines())
}


def _env(data_dir: Path, clip_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PIXSEEK_DATA_DIR": str(data_dir),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{clip_dir}",
        "PIXSEEK_BATCH_SIZE": "32",
        **extra,
    }


def cli_run(env: dict[str, str], *args: Any) -> str:
    """`pixseek ARGS` in-process with exactly these PIXSEEK_* variables; returns stdout."""
    from click.testing import CliRunner

    from pixseek.cli import main

    cleared = {k: None for k in os.environ if k.startswith("PIXSEEK_")}
    result = CliRunner().invoke(
        main, [str(a) for a in args], env={**cleared, **env}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def api_env(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> dict[str, str]:
    """A data dir holding coco_mini as `coco`, ingested once for every API test module."""
    env = _env(tmp_path_factory.mktemp("api-data"), tiny_clip_dir)
    cli_run(env, "ingest", COCO, "--labels", COCO / "labels.jsonl", "-c", "coco", "--json")
    return env


def make_client(env: dict[str, str], **overrides: Any) -> Any:
    from fastapi.testclient import TestClient
    from pixseek.api.app import create_app

    from pixseek.config import load_settings

    settings = dataclasses.replace(load_settings(env), **overrides)
    return TestClient(create_app(settings), raise_server_exceptions=True)


@pytest.fixture(scope="module")
def client(api_env: dict[str, str]) -> Iterator[Any]:
    with make_client(api_env) as test_client:
        yield test_client


def search(client: Any, **body: Any) -> Any:
    return client.post("/search", json={"collection": "coco", **body})


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def error(response: Any, status: int) -> str:
    """The one-line message of an error response with this status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    assert "\n" not in body["detail"] and body["detail"]
    return body["detail"]


def _jpeg(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG")
    return out.getvalue()


# -- service routes ------------------------------------------------------------------------------


def test_health_collections_and_openapi(client):
    health = ok(client.get("/health"))
    assert health["status"] == "ok" and health["auth"] is False
    assert health["store"] == {"backend": "embedded", "ok": True, "collections": 1}
    assert health["jobs"]["mode"] == "in-process" and health["jobs"]["ok"] is True
    assert health["model"]["clip"].startswith("local-dir:")
    [coco] = ok(client.get("/collections"))
    assert coco["name"] == "coco" and coco["points"] == 239 and coco["vectors"]["clip"] == 32
    assert ok(client.get("/collections/coco")) == coco
    error(client.get("/collections/nope"), 404)
    error(client.get("/collections/bad name!"), 422)
    spec = ok(client.get("/openapi.json"))
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) >= {  # ingest and duplicates routes are tested with their stages
        "/health",
        "/collections",
        "/collections/{collection}",
        "/search",
        "/images/{collection}/{point_id}",
        "/images/{collection}/{point_id}/thumbnail",
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/result",
        "/jobs/{job_id}/images/{index}",
    }
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "SearchBody" in spec["components"]["schemas"]
    assert set(spec["paths"]["/jobs/{job_id}"]) == {"get", "delete"}


def test_serve_command_is_registered(api_env):
    text = cli_run(api_env, "serve", "--help")
    assert "--host" in text and "--port" in text and "web gallery" in text


def test_page_and_assets_work_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'id="q"' in page.text and 'id="where"' in page.text
    for asset, kind in [
        ("app.js", "javascript"),
        ("steer.js", "javascript"),
        ("style.css", "text/css"),
    ]:
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert "http://" not in response.text and "https://" not in response.text  # no CDN
    assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/static/../api/app.py").status_code == 404


# -- search ----------------------------------------------------------------------------------------


def _check_hits(result: dict, limit: int, offset: int = 0) -> list[dict]:
    hits = result["hits"]
    assert len(hits) == limit
    assert [h["rank"] for h in hits] == list(range(offset + 1, offset + limit + 1))
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    for hit in hits:
        uuid.UUID(hit["id"])
        assert hit["image_url"] == f"/images/coco/{hit['id']}"
        assert hit["thumbnail_url"] == f"/images/coco/{hit['id']}/thumbnail"
        assert hit["source"] == hit["payload"]["source"]
    return hits


def test_search_matches_the_cli(client, api_env):
    """Same code path: the API's hits are the CLI's, for weighted/negative terms and a filter."""
    query = ["2:dog", "-:grass", "+", "red", "car"]
    cli = json_lines(
        cli_run(api_env, "search", *query, "-c", "coco", "-k", "7", "-w", "width>=400", "--json")
    )
    api = ok(search(client, q=" ".join(query), limit=7, where=["width>=400"]))
    assert api["query"] == "2*dog - grass + red car"
    hits = _check_hits(api, 7)
    assert [(h["id"], h["score"]) for h in hits] == [(r["id"], r["score"]) for r in cli]
    assert all(h["payload"]["width"] >= 400 for h in hits)


def test_pagination_threshold_and_ensemble(client):
    full = _check_hits(ok(search(client, q="a kitchen", limit=30)), 30)
    page = ok(search(client, q="a kitchen", limit=10, offset=10))
    assert [h["id"] for h in _check_hits(page, 10, 10)] == [h["id"] for h in full[10:20]]
    assert page["next_offset"] == 20
    cut = full[5]["score"]
    kept = ok(search(client, q="a kitchen", limit=100, threshold=cut))["hits"]
    assert kept and all(h["score"] >= cut - 1e-6 for h in kept)
    assert (
        len(kept) < 100
        and ok(search(client, q="x", limit=100, threshold=cut))["next_offset"] is None
    )
    plain = ok(search(client, q="a kitchen", limit=3, ensemble=False))["hits"]
    assert [h["score"] for h in plain] != [h["score"] for h in full[:3]]


def test_more_like_this_and_less_like_this(client):
    first = ok(search(client, q="a dog", limit=3))["hits"]
    seed, other = first[0]["id"], first[1]["id"]
    like = ok(search(client, like=[seed], limit=10))
    assert like["query"] == f"point:{seed}"
    ids = [h["id"] for h in _check_hits(like, 10)]
    assert seed not in ids  # the example itself is left out
    mixed = ok(search(client, like=[seed, f"-:{other}"], limit=10))
    assert mixed["query"] == f"point:{seed} - point:{other}"
    assert {seed, other}.isdisjoint(h["id"] for h in mixed["hits"])
    composed = ok(search(client, like=[seed], modify="at night", modify_weight=0.3, limit=5))
    assert "modified by 'at night'" in composed["query"] and len(composed["hits"]) == 5
    message = error(search(client, like=[str(uuid.uuid4())]), 422)
    assert "is not in collection 'coco'" in message
    assert "not a point id" in error(search(client, like=["../../etc/passwd"]), 422)


def _upload(client: Any, query: dict[str, Any], *images: tuple[str, bytes]) -> Any:
    files = [("images", (name, data, "image/jpeg")) for name, data in images]
    return client.post(
        "/search", data={"query": json.dumps({"collection": "coco", **query})}, files=files
    )


def test_search_by_uploaded_images(client):
    data = IMAGE.read_bytes()
    result = ok(_upload(client, {"limit": 3}, ("cat.jpg", data)))
    assert result["query"] == "upload:cat.jpg"
    top = result["hits"][0]
    assert top["source"] == "val2017/000000000139.jpg" and top["score"] > 0.99  # itself
    pushed = ok(
        _upload(client, {"q": "a room", "image_weights": [-1], "limit": 5}, ("x.jpg", data))
    )
    assert pushed["query"] == "a room - upload:x.jpg"
    assert "val2017/000000000139.jpg" not in [h["source"] for h in pushed["hits"]]
    two = ok(_upload(client, {"image_weights": [2, 1], "limit": 2}, ("a", data), ("b", _jpeg())))
    assert two["query"] == "2*upload:a + upload:b"
    composed = ok(_upload(client, {"modify": "in the snow", "limit": 4}, ("r.jpg", data)))
    assert composed["query"].startswith("(upload:r.jpg modified by 'in the snow'")
    message = error(_upload(client, {"image_weights": [1, 1]}, ("a.jpg", data)), 422)
    assert "one weight per image" in message
    message = error(_upload(client, {"modify": "x"}, ("a.jpg", data), ("b.jpg", data)), 422)
    assert "exactly one reference" in message
    assert "no `query` part" in error(client.post("/search", files={"images": ("a", data)}), 422)
    as_file = {
        "query": ("q.json", json.dumps({"collection": "coco", "limit": 1}), "application/json")
    }
    found = ok(client.post("/search", files={**as_file, "images": ("cat.jpg", data)}))
    assert found["hits"][0]["source"] == "val2017/000000000139.jpg"  # curl -F query=@q.json


def test_filters_expression_language_and_raw_qdrant_json(client):
    dogs = ok(search(client, q="an animal", where=["label=dog"], limit=100))["hits"]
    expected = sum("dog" in (row.get("labels") or []) for row in LABELS.values())
    assert len(dogs) == expected > 0
    assert all("dog" in h["payload"]["labels"] for h in dogs)
    raw = {"must": [{"key": "labels", "match": {"value": "dog"}}]}
    for body in ({"where": [json.dumps(raw)]}, {"filter": raw}):
        same = ok(search(client, q="an animal", limit=100, **body))["hits"]
        assert [h["id"] for h in same] == [h["id"] for h in dogs]
    both = ok(search(client, q="x", where=["width>=600"], filter=raw, limit=100))["hits"]
    assert all(h["payload"]["width"] >= 600 and "dog" in h["payload"]["labels"] for h in both)
    assert len(both) < len(dogs)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"where": ["width>=abc"]}, "where 'width>=abc': expected a number at position 7"),
        ({"where": ["label in (dog"]}, "expected ',' or ')' at position 13"),
        ({"where": ["=dog"]}, "expected a field name"),
        ({"where": ['{"must": [']}, "invalid JSON"),
        ({"where": ['{"must": 5}']}, "not a valid Qdrant filter"),
        ({"filter": {"must": [{"key": "labels", "match": {"nope": 1}}]}}, "not a valid Qdrant"),
    ],
)
def test_malformed_filters_are_422_with_the_message(client, body, expected):
    assert expected in error(search(client, q="dog", **body), 422)


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"collection": "nope", "q": "dog"}, 404, "'nope' does not exist; GET /collections"),
        ({"collection": "../../etc", "q": "dog"}, 422, "invalid collection name"),
        ({"collection": "coco"}, 422, "give query text, an uploaded image or a `like` point"),
        ({"collection": "coco", "q": "-:grass"}, 422, "only negative terms"),
        ({"collection": "coco", "q": "dog", "limit": 0}, 422, "limit: Input should be greater"),
        ({"collection": "coco", "q": "dog", "lmit": 3}, 422, "lmit: Extra inputs"),
        ({"collection": "coco", "q": "./secret.jpg"}, 422, "looks like an image path"),
        ({"collection": "coco", "q": "dog /etc/passwd"}, 422, "looks like an image path"),
        ({"q": "dog"}, 422, "collection: Field required"),
    ],
)
def test_search_errors(client, body, status, expected):
    assert expected in error(client.post("/search", json=body), status)


def test_bad_bodies(client):
    assert "not valid JSON" in error(client.post("/search", content=b"{nope"), 422)
    headers = {"content-type": "text/plain"}
    assert "unsupported content type" in error(
        client.post("/search", content=b"dog", headers=headers), 415
    )
    assert error(client.post("/search", json=[1, 2]), 422)
    assert error(
        client.post("/jobs", content=b"{", headers={"content-type": "application/json"}), 422
    )


def test_wrong_model_configured_is_503_but_likes_still_work(api_env, tmp_path):
    from pixseek.models.random_weights import write_random_clip

    other = write_random_clip(tmp_path / "other-clip")
    with make_client(api_env, clip_model=f"local-dir:{other}") as wrong:
        assert "was built with CLIP model" in error(search(wrong, q="dog"), 503)
        like = ok(wrong.post("/search", json={"collection": "coco", "like": [_any_id(wrong)]}))
        assert len(like["hits"]) == 20  # "more like this" needs no model
    with make_client(api_env, clip_model=f"local-dir:{tmp_path / 'missing'}") as broken:
        assert "the CLIP model cannot be loaded" in error(search(broken, q="dog"), 503)


def _any_id(client: Any) -> str:
    """A stored point id, read from the store itself (no query model needed)."""
    store = client.app.state.pixseek.store
    return next(iter(store.scroll("coco", page_size=1))).id
