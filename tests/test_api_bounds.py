"""Bounded work per request (in-process): every hostile shape is a fast 4xx, never a 500.

JSON body size, depth and member count; filter depth, condition count, bad numbers and ids;
query length and term count; pixels per request and decode time; the rate limit and CORS, both
off by default; no absolute server path in hits or errors. The timing side (a real server stays
responsive while it refuses) is in test_api_serve_hostile.py; the filter language on its own is
fuzzed in test_filters_fuzz.py.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from typing import Any

import pytest

from tests import test_api
from tests.test_api import _jpeg, error, make_client, ok

api_env = test_api.api_env
client = test_api.client


def deep_filter(levels: int) -> dict[str, Any]:
    flt: dict[str, Any] = {"key": "width", "range": {"gte": 1}}
    for _ in range(levels):
        flt = {"must": [flt]}
    return flt


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none: headers are read, not pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def search(client: Any, **body: Any) -> Any:
    return client.post("/search", json={"collection": "coco", **body})


def quick(response_fn: Any, seconds: float = 2.0) -> Any:
    start = time.monotonic()
    response = response_fn()
    assert time.monotonic() - start < seconds, f"took {time.monotonic() - start:.2f}s"
    return response


# -- JSON bodies -------------------------------------------------------------------------------


def test_json_body_size_depth_and_members_are_413_before_parsing(client):
    big = json.dumps({"collection": "coco", "q": "x" * 300_000})
    assert "PIXSEEK_API_MAX_JSON_BYTES" in error(
        client.post("/search", content=big, headers={"content-type": "application/json"}), 413
    )
    nested = '{"collection": "coco", "filter": ' + "[" * 5000 + "]" * 5000 + "}"
    assert "nests deeper than 32" in error(
        quick(lambda: client.post("/search", content=nested)), 413
    )
    keys = json.dumps({"prompt": "a dog", "x": [0] * 25_000})  # < 256 KiB, 25k members
    assert len(keys) < 256 * 1024
    message = error(quick(lambda: client.post("/jobs", content=keys)), 413)
    assert "more than 20000 values" in message
    # the same bounds on a multipart `query` part
    part = {"query": '{"collection": "coco", "where": ' + "[" * 100 + "]" * 100 + "}"}
    response = client.post("/search", data=part, files={"images": ("a.jpg", _jpeg())})
    assert "`query` part nests deeper" in error(response, 413)


def test_filters_are_bounded_and_bad_values_are_422(client):
    # 250 deep was a RecursionError (500) on /search and a 202 then a failed job on /jobs.
    deep = deep_filter(250)
    assert "nests deeper than" in error(search(client, q="x", where=[json.dumps(deep)]), 413)
    job = {"prompt": "a dog", "collection": "coco", "filter": deep_filter(10)}
    assert "nests deeper than 16" in error(client.post("/jobs", json=job), 413)
    many = {"should": [{"key": "width", "match": {"value": i}} for i in range(2000)]}
    response = quick(lambda: search(client, q="x", filter=many))
    assert "the limit is 1000" in error(response, 413)
    values = ", ".join(str(i) for i in range(1200))
    assert "the limit is 1000" in error(search(client, q="x", where=[f"width in ({values})"]), 413)
    split = [f"width in ({', '.join(str(i) for i in range(120))})"] * 9  # 9 x 121 in all
    assert "in all" in error(search(client, q="x", where=split), 413)
    bad = [
        ({"must": [{"has_id": ["x"]}]}, "is not a point id"),
        ({"must": [{"has_id": [-3]}]}, "is not a point id"),
        ({"must": [{"key": "width", "match": {"value": 10**30}}]}, "64-bit"),
        ({"must": [{"key": "width", "range": {"gte": "wide"}}]}, "not a valid Qdrant filter"),
    ]
    for flt, expected in bad:
        assert expected in error(search(client, q="x", where=[json.dumps(flt)]), 422), flt
    for text in ('{"must": [{"key": "width", "range": {"gte": NaN}}]}', '{"must": 1e999}'):
        assert "number" in error(search(client, q="x", where=[text]), 422)
    good = {"must": [{"has_id": [ok(search(client, q="x", limit=1))["hits"][0]["id"]]}]}
    assert len(ok(search(client, q="x", where=[json.dumps(good)]))["hits"]) == 1


def test_query_length_and_term_count(client):
    assert "PIXSEEK_API_MAX_QUERY_CHARS" in error(search(client, q="a" * 1001), 413)
    assert "PIXSEEK_API_MAX_QUERY_CHARS" in error(search(client, q="x", modify="b" * 1001), 413)
    terms = " + ".join(f"w{i}" for i in range(40))
    assert "40 terms" in error(search(client, q=terms), 413)
    assert ok(search(client, q=" + ".join(f"w{i}" for i in range(5)), limit=1))


# -- uploads -----------------------------------------------------------------------------------


def _query(**body: Any) -> dict[str, str]:
    return {"query": json.dumps({"collection": "coco", **body})}


def test_pixels_per_request_are_bounded_before_decoding(client):
    # 8 images declaring 88 MP each (the attack cost 15 s of CPU): refused from the headers.
    files = [("images", (f"{i}.png", png_header(11_000, 8_000), "image/png")) for i in range(8)]
    response = quick(lambda: client.post("/search", data=_query(), files=files))
    assert "PIXSEEK_API_MAX_REQUEST_PIXELS" in error(response, 413)
    one = [("images", ("big.png", png_header(9_000, 9_000), "image/png"))]  # 81 MP > 64 MP
    assert "81000000 pixels" in error(client.post("/search", data=_query(), files=one), 413)
    small = [("images", (f"{i}.jpg", _jpeg((64, 48)), "image/jpeg")) for i in range(8)]
    assert ok(client.post("/search", data=_query(limit=2), files=small))


def test_slow_decoding_times_out(api_env):
    files = {"images": ("a.jpg", _jpeg((640, 480)))}
    with make_client(api_env, api_decode_timeout_s=1e-6) as strict:
        response = strict.post("/search", data=_query(), files=files)
        assert "PIXSEEK_API_DECODE_TIMEOUT_S" in error(response, 413)


# -- rate limit and CORS -----------------------------------------------------------------------


def test_rate_limit_and_cors_are_off_by_default(client):
    for _ in range(12):
        assert client.get("/collections").status_code == 200
    response = client.get("/collections", headers={"Origin": "http://ok.test"})
    assert "access-control-allow-origin" not in response.headers


def test_rate_limit_per_caller(api_env):
    from pixseek.api.ratelimit import TokenBuckets

    with make_client(api_env, api_rate_limit=5, api_key="k") as limited:
        keyed = {"X-API-Key": "k"}
        codes = [limited.get("/collections", headers=keyed).status_code for _ in range(5)]
        assert codes == [200] * 5
        refused = limited.get("/collections", headers=keyed)
        assert "PIXSEEK_API_RATE_LIMIT" in error(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert limited.get("/health").status_code == 200  # not counted
        # a wrong key is counted against the sender's address, which has tokens left
        assert limited.get("/collections", headers={"X-API-Key": "x"}).status_code == 401
        # local pixseek commands (the data dir's secret) are not counted
        limited.app.state.local_secret = "local-secret"
        local = {"X-Pixseek-Local": "local-secret"}
        assert [limited.get("/collections", headers=local).status_code for _ in range(8)] == [
            200
        ] * 8
        assert limited.get("/collections", headers=keyed).status_code == 429  # still limited
    buckets = TokenBuckets(60)  # one a second: a caller waits, others do not
    assert [buckets.take("a", now=0.0) for _ in range(60)] == [0.0] * 60
    assert buckets.take("a", now=0.0) == pytest.approx(1.0)
    assert buckets.take("b", now=0.0) == 0.0
    assert buckets.take("a", now=1.5) == 0.0


def test_cors_allow_list(api_env):
    with make_client(api_env, api_cors_origins=("http://ok.test",)) as c:
        preflight = {"Origin": "http://ok.test", "Access-Control-Request-Method": "POST"}
        answer = c.options(
            "/search", headers={**preflight, "Access-Control-Request-Headers": "x-api-key"}
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://ok.test"
        other = c.options("/search", headers={**preflight, "Origin": "http://evil.test"})
        assert other.headers.get("access-control-allow-origin") != "http://evil.test"
        simple = c.get("/collections", headers={"Origin": "http://ok.test"})
        assert simple.headers["access-control-allow-origin"] == "http://ok.test"


# -- server paths ------------------------------------------------------------------------------


def test_hits_carry_root_names_not_server_paths(api_env, client):
    from tests.conftest import COCO

    hits = ok(search(client, q="x", limit=3))["hits"]
    assert {hit["payload"]["root"] for hit in hits} == {COCO.name}
    assert str(COCO.parent) not in json.dumps(hits)
    with make_client(api_env, api_show_paths=True) as shown:
        hits = ok(search(shown, q="x", limit=3))["hits"]
        assert {hit["payload"]["root"] for hit in hits} == {str(COCO.resolve())}


def test_error_lines_name_no_server_folder(api_env):
    from pathlib import Path

    from pixseek.api.paths import redact

    from pixseek.config import load_settings

    settings = load_settings(api_env)
    data = settings.data_dir
    busy = f"collection 'coco' at {data}/collections/coco is held by another process (pid 7)"
    assert redact(busy, settings) == (
        "collection 'coco' at $PIXSEEK_DATA_DIR/collections/coco is held by another process (pid 7)"
    )
    model = "cannot load local-dir:/opt/models/vit-b-32: missing open_clip_config.json"
    assert (
        redact(model, settings)
        == "cannot load local-dir:.../vit-b-32: missing open_clip_config.json"
    )
    kept = "collection 'x' does not exist; GET /collections lists them (see http://h/a/b)"
    assert redact(kept, settings) == kept
    assert "/" not in redact("no such file /srv/p/a.jpg", settings).replace(".../", "")
    # Through the API: a collection whose shard cannot be read names the collection only.
    broken = Path(data) / "collections" / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "pixseek.json").write_text("{not json")
    try:
        with make_client(api_env) as c:
            for response in (c.get("/collections/broken"), c.get("/health")):
                assert str(data) not in response.text, response.text
    finally:
        import shutil

        shutil.rmtree(broken)


def test_json_shape_scan_skips_strings_and_stops_early():
    from pixseek.jsonscan import json_shape

    text = '{"a": "[[[{{{,,,\\"]]", "b": [1, 2, [3]], "c": {}}'
    assert json.loads(text)  # valid JSON, brackets and escaped quotes inside a string
    shape = json_shape(text, 10, 100)
    # 7 members (a, b, c; 1, 2, [3]; 3), counted from the commas and containers: an empty
    # container counts as one, so the count is an upper bound
    assert (shape.depth, shape.members) == (3, 8)
    assert json_shape(text.encode(), 10, 100) == shape
    assert json_shape("[" * 10_000_000, 32, 100).depth == 33  # stops at the first level over
    assert json_shape("7", 1, 1).depth == 0
