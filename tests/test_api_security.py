"""HTTP API: image routes, path traversal, the API key, and request size limits."""

from __future__ import annotations

import io
import json
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests import test_api
from tests.conftest import COCO
from tests.test_api import IMAGE, _jpeg, cli_run, error, make_client, ok

# Session/module fixtures shared with test_api.py (coco_mini ingested once).
api_env = test_api.api_env
client = test_api.client


@pytest.fixture(scope="module")
def point(client: Any) -> dict[str, Any]:
    """The stored point of IMAGE."""
    hits = client.post(
        "/search",
        json={"collection": "coco", "q": "x", "where": ["source=val2017/000000000139.jpg"]},
    ).json()["hits"]
    assert len(hits) == 1
    return hits[0]


# -- images ------------------------------------------------------------------------------------


def test_original_image_and_thumbnail(client, point):
    response = client.get(point["image_url"])
    assert response.status_code == 200 and response.content == IMAGE.read_bytes()
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    assert client.get(point["image_url"], headers={"If-None-Match": etag}).status_code == 304
    thumb = client.get(point["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert max(image.size) == 256
    small = client.get(point["thumbnail_url"], params={"size": 64})
    with Image.open(io.BytesIO(small.content)) as image:
        assert max(image.size) == 64
    assert client.get(point["thumbnail_url"]).content == thumb.content  # cached
    assert "size" in error(client.get(point["thumbnail_url"], params={"size": 5000}), 422)
    assert "size" in error(client.get(point["thumbnail_url"], params={"size": "../1"}), 422)


def test_unknown_ids_are_404_and_malformed_ids_422(client, point):
    unknown = str(uuid.uuid4())
    for suffix in ("", "/thumbnail"):
        assert "is not in collection" in error(client.get(f"/images/coco/{unknown}{suffix}"), 404)
        assert "does not exist" in error(client.get(f"/images/nope/{point['id']}{suffix}"), 404)
        assert "not a point id" in error(client.get(f"/images/coco/12345{suffix}"), 422)
        upper = point["id"].upper()  # any spelling of the UUID names the same point
        assert client.get(f"/images/coco/{upper}{suffix}").status_code == 200


def test_image_whose_file_is_gone_is_404(api_env, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for image in sorted((COCO / "val2017").glob("*.jpg"))[:2]:
        shutil.copy(image, folder / image.name)
    cli_run(api_env, "ingest", folder, "-c", "gone", "--json")
    with make_client(api_env) as client:
        hits = ok(client.post("/search", json={"collection": "gone", "q": "x", "limit": 2}))["hits"]
        (folder / hits[0]["source"]).unlink()
        assert "gone from where it was ingested" in error(client.get(hits[0]["image_url"]), 404)
        assert error(client.get(hits[0]["thumbnail_url"]), 404)
        assert client.get(hits[1]["thumbnail_url"]).status_code == 200


class OpenedFiles:
    """Records every file the process opens (audit hook) while `watching`."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.watching = False
        self._lock = threading.Lock()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.watching and event == "open" and args and isinstance(args[0], str | bytes):
            with self._lock:
                self.paths.append(str(args[0]))


_opened = OpenedFiles()


@pytest.fixture
def opened() -> Iterator[OpenedFiles]:
    _opened.paths.clear()
    _opened.watching = True
    yield _opened
    _opened.watching = False


TRAVERSALS = [
    "..",
    "../../../../etc/passwd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "....//....//secret.txt",
    "..\\..\\secret.txt",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "secret.txt",
    "%00",
    "coco%00.jpg",
]


def raw_request(app: Any, method: str, raw_path: str) -> tuple[int, bytes]:
    """Call the ASGI app with the path exactly as sent on the wire (as uvicorn passes it):
    an HTTP client would normalise `..` segments away before they reach the server."""
    import asyncio
    from urllib.parse import unquote

    path, _, query = raw_path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def test_path_traversal_in_every_path_parameter(client, point, api_env, opened):
    secret = Path(api_env["PIXSEEK_DATA_DIR"]).parent / "secret.txt"
    secret.write_text("TOP-SECRET")
    opened.paths.clear()
    good_id, job_id = point["id"], str(uuid.uuid4())
    templates = [
        "/images/{x}/" + good_id,
        "/images/{x}/" + good_id + "/thumbnail",
        "/images/coco/{x}",
        "/images/coco/{x}/thumbnail",
        "/images/coco/" + good_id + "/thumbnail?size={x}",
        "/collections/{x}",
        "/jobs/{x}",
        "/jobs/{x}/result",
        "/jobs/{x}/images/0",
        "/jobs/" + job_id + "/images/{x}",
        "/static/{x}",
    ]
    for template in templates:
        for attempt in TRAVERSALS:
            url = template.replace("{x}", attempt)
            for method in ("GET", "DELETE"):
                status, body = raw_request(client.app, method, url)
                allowed = (404, 405, 422) if method == "DELETE" else (404, 422)
                assert status in allowed, (method, url, status)
                assert b"TOP-SECRET" not in body and b"root:" not in body
    # A collection named `secret.txt` is looked up as <store>/secret.txt/pixseek.json: fine.
    read = [p for p in opened.paths if p == str(secret) or "passwd" in p]
    assert read == []


# -- API key -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(api_env: dict[str, str]) -> Iterator[Any]:
    with make_client(api_env, api_key="s3cret-key") as test_client:
        yield test_client


def _requests(point_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, route path, URL, request arguments) for every route behind the key."""
    job = str(uuid.uuid4())
    body = {"collection": "coco", "q": "dog"}
    point = "/images/{collection}/{point_id}"
    return [
        ("GET", "/openapi.json", "/openapi.json", {}),
        ("GET", "/collections", "/collections", {}),
        ("GET", "/collections/{collection}", "/collections/coco", {}),
        ("POST", "/search", "/search", {"json": body}),
        ("GET", point, f"/images/coco/{point_id}", {}),
        ("GET", point + "/thumbnail", f"/images/coco/{point_id}/thumbnail", {}),
        ("POST", "/jobs", "/jobs", {"json": {"prompt": "a dog", "collection": "coco"}}),
        ("GET", "/jobs/{job_id}", f"/jobs/{job}", {}),
        ("GET", "/jobs/{job_id}/result", f"/jobs/{job}/result", {}),
        ("GET", "/jobs/{job_id}/images/{index}", f"/jobs/{job}/images/0", {}),
        ("DELETE", "/jobs/{job_id}", f"/jobs/{job}", {}),
        ("POST", "/ingest", "/ingest", {"json": {"paths": ["/srv"], "collection": "coco"}}),
        ("POST", "/ingest/upload", "/ingest/upload", {}),
        ("GET", "/ingest/{job_id}", f"/ingest/{job}", {}),
        ("GET", "/ingest/{job_id}/result", f"/ingest/{job}/result", {}),
        ("DELETE", "/ingest/{job_id}", f"/ingest/{job}", {}),
        ("GET", "/collections/{collection}/duplicates", "/collections/coco/duplicates", {}),
        ("GET", "/collections/{collection}/facets", "/collections/coco/facets", {}),
        ("GET", "/collections/{collection}/browse", "/collections/coco/browse", {}),
        (
            "GET",
            "/collections/{collection}/points/{point_id}",
            f"/collections/coco/points/{point_id}",
            {},
        ),
    ]


def test_api_key_is_required_on_every_route_but_health(keyed, point):
    paths = keyed.app.openapi()["paths"]
    routes = {(m.upper(), path) for path, ops in paths.items() if path != "/health" for m in ops}
    routes.add(("GET", "/openapi.json"))
    requests = _requests(point["id"])
    assert {(method, path) for method, path, _, _ in requests} == routes
    for method, _, url, kwargs in requests:
        missing = keyed.request(method, url, **kwargs)
        assert "needs an API key" in error(missing, 401), url
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = keyed.request(method, url, headers={"X-API-Key": "nope"}, **kwargs)
        assert error(wrong, 401) == "wrong API key"
    health = ok(keyed.get("/health"))
    assert health["auth"] is True
    assert keyed.get("/").status_code == 200  # the page's own files hold no data


def test_api_key_accepted_as_header_or_bearer(keyed, point):
    assert keyed.get("/collections", headers={"X-API-Key": "s3cret-key"}).status_code == 200
    bearer = {"Authorization": "Bearer s3cret-key"}
    assert keyed.get(point["thumbnail_url"], headers=bearer).status_code == 200
    found = keyed.post("/search", json={"collection": "coco", "q": "dog"}, headers=bearer)
    assert found.status_code == 200
    assert (
        keyed.get("/collections", headers={"Authorization": "Basic s3cret-key"}).status_code == 401
    )


# -- request limits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(api_env: dict[str, str]) -> Iterator[Any]:
    with make_client(api_env, api_max_upload_bytes=50_000, max_image_pixels=100_000) as c:
        yield c


def _query(**body: Any) -> dict[str, str]:
    return {"query": json.dumps({"collection": "coco", **body})}


def test_upload_size_limits(limited):
    big = IMAGE.read_bytes()  # about 160 kB, over the 50 kB limit
    assert len(big) > 50_000
    response = limited.post("/search", data=_query(), files={"images": ("big.jpg", big)})
    assert "larger than 50000 bytes" in error(response, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b" " * 5000

    streamed = limited.post(
        "/search", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "larger than 50000 bytes" in error(streamed, 413)
    small = _jpeg((40, 40))
    too_many = [("images", (f"{i}.jpg", small, "image/jpeg")) for i in range(9)]
    assert "the limit is 8" in error(limited.post("/search", data=_query(), files=too_many), 413)
    assert ok(limited.post("/search", data=_query(limit=2), files={"images": ("s.jpg", small)}))


def test_bad_uploads_are_422_naming_the_file(limited):
    cases = [
        (b"", "is empty"),
        (b"not an image at all", "cannot be used"),
        (_jpeg((400, 300)), "cannot be used"),  # 120,000 pixels > max_image_pixels
        (_jpeg((64, 48))[:200], "cannot be used"),  # truncated
    ]
    for data, expected in cases:
        response = limited.post("/search", data=_query(), files={"images": ("bad.jpg", data)})
        message = error(response, 422)
        assert "'bad.jpg'" in message and expected in message
    extra = limited.post("/search", data={**_query(), "x": "1"}, files={"images": ("s", _jpeg())})
    assert "unknown form part(s) x" in error(extra, 422)


def test_thumbnail_cache_stays_within_its_byte_budget(client):
    from pixseek.api.images import Images

    hits = client.post("/search", json={"collection": "coco", "q": "x", "limit": 6}).json()["hits"]
    images = Images(client.app.state.pixseek.store, cache_bytes=40_000)
    sizes = [len(images.thumbnail("coco", hit["id"], 256).data) for hit in hits]
    assert sum(sizes) > 40_000
    assert images._cached <= 40_000 and 0 < len(images._thumbnails) < len(hits)
    assert images._cached == sum(len(t.data) for t in images._thumbnails.values())
