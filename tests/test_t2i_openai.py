"""The hosted images backend against a local server speaking the OpenAI images API.

Requests go over real HTTP to tests/images_api_server.py; the backend is chosen the way users
choose it (PIXSEEK_T2I_MODEL through pixseek.models.t2i_backends). Settings come from the
environment, as in a worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pixseek.config import load_settings
from pixseek.errors import InputError, Misconfigured, ServiceUnavailable, UserError
from pixseek.models import t2i_backends
from pixseek.models.generation import GenerationParams
from pixseek.models.rewrite import rewrite_query
from tests.images_api_server import ImagesAPI, Step

pytestmark = pytest.mark.timeout(60)
KEY_ENV = "PIXSEEK_TEST_IMAGES_KEY"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[ImagesAPI]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.setenv("PIXSEEK_T2I_API_KEY_ENV", KEY_ENV)
    monkeypatch.setenv("PIXSEEK_T2I_API_RETRIES", "3")
    monkeypatch.setenv("PIXSEEK_T2I_API_TIMEOUT_S", "5")
    monkeypatch.setenv("PIXSEEK_DATA_DIR", str(tmp_path / "data"))
    for name in ("PIXSEEK_T2I_API_SIZE", "PIXSEEK_T2I_API_QUALITY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with ImagesAPI("sk-test") as server:
        yield server


def generator(setting: str):
    backend = t2i_backends.resolve(setting)
    backend.check()
    return backend.load("cpu")


def compatible(api: ImagesAPI, model: str = "tiny-images") -> str:
    return f"openai-compatible:{model}@{api.base_url}"


PARAMS = GenerationParams(prompt="a dog on a couch", width=64, height=48)


def test_b64_json_images_and_the_documented_request(api, monkeypatch):
    monkeypatch.setenv("PIXSEEK_T2I_API_QUALITY", "high")
    t2i = generator(compatible(api))
    steps: list[tuple[int, int]] = []
    images = t2i.generate(PARAMS, [3, 4, 5], lambda done, total: steps.append((done, total)))
    assert [g.seed for g in images] == [3, 4, 5]
    assert all(g.image.size == (64, 48) and g.image.mode == "RGB" for g in images)
    assert len({g.image.tobytes() for g in images}) == 3  # three different pictures
    (request,) = api.posts()
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.body == {
        "model": "tiny-images",
        "prompt": "a dog on a couch",
        "n": 3,
        "size": "64x48",
        "quality": "high",
        "response_format": "b64_json",
    }
    assert steps[-1] == (3, 3)
    assert "tiny-images@" + api.base_url in t2i_backends.loaded_models()


def test_url_answers_are_downloaded_without_the_key(api):
    api.script(Step(urls=True))
    images = generator(compatible(api)).generate(PARAMS, [0, 1])
    assert [g.image.size for g in images] == [(64, 48), (64, 48)]
    downloads = [r for r in api.requests if r.method == "GET"]
    assert len(downloads) == 2 and all("Authorization" not in r.headers for r in downloads)


def test_openai_prefix_checks_documented_sizes_and_needs_a_key(api, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)  # as the official client honours it
    t2i = generator("openai:gpt-image-1")
    with pytest.raises(UserError, match="1024x1024, 1536x1024, 1024x1536, auto"):
        t2i.check_size(512, 512)
    t2i.check_size(1536, 1024)
    with pytest.raises(UserError, match="negative prompt"):
        t2i.check_prompt("blurry", "negative prompt")
    (image,) = t2i.generate(GenerationParams(prompt="a cat", width=1024, height=1024), [0])
    assert image.image.size == (1024, 1024)
    assert "response_format" not in api.posts()[-1].body  # gpt-image-1 refuses it
    monkeypatch.setenv("PIXSEEK_T2I_API_QUALITY", "hd")
    with pytest.raises(Misconfigured, match="low, medium, high, auto"):
        generator("openai:gpt-image-1")
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(Misconfigured, match=KEY_ENV):
        t2i_backends.resolve("openai:gpt-image-1").check()


def test_the_fingerprint_follows_model_server_and_options(api, monkeypatch):
    first = t2i_backends.resolve(compatible(api)).fingerprint()
    assert first != t2i_backends.resolve(compatible(api, "other")).fingerprint()
    monkeypatch.setenv("PIXSEEK_T2I_API_QUALITY", "low")
    assert t2i_backends.resolve(compatible(api)).fingerprint() != first


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_a_configuration_error_without_retries(api, status):
    api.script(
        Step(status=status, error={"message": "Incorrect API key", "code": "invalid_api_key"})
    )
    with pytest.raises(Misconfigured, match=f"{status} invalid_api_key.*set {KEY_ENV}"):
        generator(compatible(api)).generate(PARAMS, [0])
    assert len(api.posts()) == 1


def test_a_content_refusal_fails_the_request_with_the_api_message(api):
    with pytest.raises(InputError, match="moderation_blocked: Your request was rejected"):
        generator(compatible(api)).generate(
            GenerationParams(prompt="something forbidden", width=64, height=64), [0]
        )
    assert len(api.posts()) == 1
    assert InputError.http_status == 422


def test_server_errors_are_retried_then_reported_as_unavailable(api):
    busy = {"message": "The server is overloaded", "type": "server_error", "code": None}
    api.script(
        Step(status=500, error=busy), Step(status=503, error=busy, headers={"Retry-After": "0"})
    )
    (image,) = generator(compatible(api)).generate(PARAMS, [0])  # third attempt succeeds
    assert image.image.size == (64, 48) and len(api.posts()) == 3
    api.script(*[Step(status=502, error=busy, headers={"Retry-After": "0"})] * 3)
    with pytest.raises(ServiceUnavailable, match="failed 3 time.*502.*overloaded"):
        generator(compatible(api)).generate(PARAMS, [0])
    assert len(api.posts()) == 6
    api.script(Step(status=429, error={"message": "Rate limit", "code": "rate_limit_exceeded"}, headers={"Retry-After": "0"}))  # fmt: skip
    generator(compatible(api)).generate(PARAMS, [0])
    assert len(api.posts()) == 8


def test_timeouts_are_retried_then_reported_as_unavailable(api, monkeypatch):
    monkeypatch.setenv("PIXSEEK_T2I_API_TIMEOUT_S", "0.5")
    monkeypatch.setenv("PIXSEEK_T2I_API_RETRIES", "2")
    api.script(Step(sleep=1.5))
    started = time.monotonic()
    (image,) = generator(compatible(api)).generate(PARAMS, [0])
    assert image.image.size == (64, 48) and time.monotonic() - started < 5
    api.script(Step(sleep=1.5), Step(sleep=1.5))
    with pytest.raises(ServiceUnavailable, match="no answer within 0.5 s"):
        generator(compatible(api)).generate(PARAMS, [0])


def test_an_unreachable_server_is_unavailable(api, monkeypatch):
    monkeypatch.setenv("PIXSEEK_T2I_API_RETRIES", "1")
    port = api.server.server_address[1]
    api.__exit__()
    with pytest.raises(ServiceUnavailable, match="cannot connect"):
        generator(f"openai-compatible:m@http://127.0.0.1:{port}/v1").generate(PARAMS, [0])


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (Step(raw=b"<html>Bad Gateway page</html>"), "did not answer JSON"),
        (Step(raw=b'{"created": 1}'), "no images for the 2 asked"),
        (Step(images=1), "1 images for the 2 asked"),
        (Step(raw=b'{"data": [{"b64_json": "@@not base64@@"}, {}]}'), "b64_json is not base64"),
        (Step(raw=b'{"data": [{"b64_json": "aGVsbG8="}, {}]}'), "an image does not decode"),
        (Step(raw=b'{"data": [{"revised_prompt": "x"}, {}]}'), "neither b64_json nor url"),
        (Step(raw=b'{"data": [{"url": "file:///etc/passwd"}, {}]}'), "is not http"),
    ],
)
def test_malformed_answers_are_clear_configuration_errors(api, step, message):
    api.script(step)
    with pytest.raises(Misconfigured, match=message):
        generator(compatible(api)).generate(PARAMS, [0, 1])
    assert len(api.posts()) == 1  # not retried: the server does not speak the API


def test_query_rewriting_is_off_by_default_and_cached_when_on(api, monkeypatch):
    assert load_settings().t2i_rewrite_model == ""
    assert rewrite_query("zwei Hunde", load_settings()) == "zwei Hunde"
    assert api.requests == []
    monkeypatch.setenv("PIXSEEK_T2I_REWRITE_MODEL", f"rewriter@{api.base_url}")
    settings = load_settings()
    prompt = rewrite_query("zwei Hunde", settings)
    assert prompt == "a detailed photograph of zwei Hunde, natural light"
    (chat,) = api.posts("/v1/chat/completions")
    assert chat.body["model"] == "rewriter" and chat.body["messages"][-1]["content"] == "zwei Hunde"
    assert chat.headers["Authorization"] == "Bearer sk-test"
    assert rewrite_query("zwei Hunde", settings) == prompt  # from the disk cache
    assert len(api.posts("/v1/chat/completions")) == 1
    api.script(Step(raw=b'{"choices": []}'))
    with pytest.raises(Misconfigured, match="no choices"):
        rewrite_query("drei Katzen", settings)
