"""Hosted text-to-image: the OpenAI images API, or any server that speaks it.

`PIXSEEK_T2I_MODEL=openai:gpt-image-1` calls https://api.openai.com/v1/images/generations (or
`$OPENAI_BASE_URL`, as the official client) with the key in `$OPENAI_API_KEY` (the variable is
`PIXSEEK_T2I_API_KEY_ENV`);
`openai-compatible:MODEL@BASE_URL` calls BASE_URL/images/generations of a self-hosted or
third-party server (the key is optional there). Request: `model`, `prompt`, `n`, `size`, and
`quality` when set; answers carry `data[].b64_json` or `data[].url` (downloaded without the key).

Sizes and qualities are checked before any request for the OpenAI models whose values are
documented; other servers get what the job asks for. The API has no seed: a job's seeds only
index its images, so the generated-image cache (keyed by this backend's fingerprint, the
parameters and the seed) reuses them exactly as for local pipelines. Steps and guidance are not
sent. Errors: pixseek.models.openai_http.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from pixseek.errors import Misconfigured, UserError
from pixseek.models import openai_http
from pixseek.models.generation import GenerationParams

log = logging.getLogger("pixseek.t2i_openai")
StepCallback = Callable[[int, int], None]

# Documented values per OpenAI model family (prefix match); others are not checked.
_GPT_IMAGE = {
    "sizes": ("1024x1024", "1536x1024", "1024x1536", "auto"),
    "qualities": ("low", "medium", "high", "auto"),
    "max_n": 10,
    "max_prompt": 32000,
    "response_format": False,  # always b64_json; the parameter is refused
}
KNOWN_MODELS: dict[str, dict[str, Any]] = {
    "gpt-image": _GPT_IMAGE,
    "dall-e-3": {
        "sizes": ("1024x1024", "1792x1024", "1024x1792"),
        "qualities": ("standard", "hd"),
        "max_n": 1,
        "max_prompt": 4000,
        "response_format": True,
    },
    "dall-e-2": {
        "sizes": ("256x256", "512x512", "1024x1024"),
        "qualities": ("standard",),
        "max_n": 10,
        "max_prompt": 1000,
        "response_format": True,
    },
}
GENERIC: dict[str, Any] = {
    "sizes": None,
    "qualities": None,
    "max_n": 10,
    "max_prompt": None,
    "response_format": True,
}


@dataclass
class Generated:
    image: Image.Image
    seed: int
    flagged: bool = False  # the API refuses instead of blanking, so never set here


@dataclass(frozen=True)
class Target:
    """What a PIXSEEK_T2I_MODEL value (without its prefix) resolves to."""

    model: str
    base_url: str
    compatible: bool  # openai-compatible: (key optional, values unchecked)

    @property
    def name(self) -> str:
        return f"{self.model}@{self.base_url}"

    @property
    def limits(self) -> dict[str, Any]:
        if self.compatible:
            return GENERIC
        for prefix, limits in KNOWN_MODELS.items():
            if self.model.startswith(prefix):
                return limits
        return GENERIC


def parse(model: str) -> Target:
    """`gpt-image-1` (OpenAI) or `MODEL@BASE_URL` (openai-compatible; the prefix is gone here)."""
    import os

    default = (os.environ.get("OPENAI_BASE_URL") or openai_http.OPENAI_BASE_URL).rstrip("/")
    name, base = openai_http.split_model(model.strip(), default)
    if not name:
        raise Misconfigured("PIXSEEK_T2I_MODEL names no model after openai: / openai-compatible:")
    return Target(name, base, compatible=base != default)


def _settings() -> Any:
    from pixseek.config import load_settings

    return load_settings()


def _options(settings: Any) -> tuple[str, str]:
    return settings.t2i_api_size.strip().lower(), settings.t2i_api_quality.strip().lower()


class HostedImages:
    """The generator a job uses: check_size, check_prompt, generate (one request per n images)."""

    def __init__(self, target: Target, endpoint: openai_http.Endpoint, size: str, quality: str):
        self.target = target
        self.endpoint = endpoint
        self.identifier = target.name
        self.size = size  # "" = the job's WIDTHxHEIGHT
        self.quality = quality
        limits = target.limits
        if quality and limits["qualities"] and quality not in limits["qualities"]:
            raise Misconfigured(
                f"{target.model} takes quality {', '.join(limits['qualities'])}, not {quality!r}; "
                "fix PIXSEEK_T2I_API_QUALITY"
            )
        self._lock = threading.Lock()

    def size_for(self, width: int, height: int) -> str:
        return self.size or f"{int(width)}x{int(height)}"

    def check_size(self, width: int, height: int) -> None:
        size, sizes = self.size_for(width, height), self.target.limits["sizes"]
        if sizes and size not in sizes:
            raise UserError(
                f"{self.target.model} makes images of {', '.join(sizes)}, not {size}; set "
                "PIXSEEK_T2I_API_SIZE (or the job's size) to one of them"
            )

    def check_prompt(self, text: str, what: str = "prompt") -> None:
        limit = self.target.limits["max_prompt"]
        if what == "negative prompt" and text:
            raise UserError(f"{self.target.model} takes no negative prompt; leave it out")
        if limit and len(text) > limit:
            raise UserError(
                f"the {what} is {len(text)} characters long, but {self.target.model} reads at "
                f"most {limit}; shorten it"
            )

    def _body(self, params: GenerationParams, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.target.model,
            "prompt": params.prompt,
            "n": n,
            "size": self.size_for(params.width, params.height),
        }
        if self.quality:
            body["quality"] = self.quality
        if self.target.limits["response_format"]:
            body["response_format"] = "b64_json"
        return body

    def generate(
        self,
        params: GenerationParams,
        seeds: Sequence[int],
        on_step: StepCallback | None = None,
    ) -> list[Generated]:
        """One image per seed; `on_step` runs between requests and retries (it may abort)."""
        results: list[Generated] = []
        step = max(1, int(self.target.limits["max_n"]))
        requests = [list(seeds[i : i + step]) for i in range(0, len(seeds), step)]

        def between() -> None:
            if on_step is not None:
                on_step(len(results), len(seeds))

        for chunk in requests:
            between()
            with self._lock:
                answer = openai_http.post_json(
                    "images/generations",
                    self._body(params, len(chunk)),
                    self.endpoint,
                    "the images API",
                    between,
                )
            images = self._images(answer, len(chunk))
            results.extend(
                Generated(image, int(seed)) for image, seed in zip(images, chunk, strict=True)
            )
            usage = answer.get("usage")
            if usage:
                log.info("images API usage for %d image(s): %s", len(chunk), usage)
        if on_step is not None:
            on_step(len(seeds), len(seeds))
        return results

    def _images(self, answer: dict[str, Any], expected: int) -> list[Image.Image]:
        data = answer.get("data")
        if not isinstance(data, list) or len(data) < expected:
            count = len(data) if isinstance(data, list) else "no"
            raise self._malformed(f"{count} images for the {expected} asked")
        return [self._decode(item) for item in data[:expected]]

    def _decode(self, item: Any) -> Image.Image:
        if not isinstance(item, dict):
            raise self._malformed("an item of data[] is not an object")
        if item.get("b64_json"):
            try:
                raw = base64.b64decode(str(item["b64_json"]), validate=True)
            except (binascii.Error, ValueError):
                raise self._malformed("b64_json is not base64") from None
        elif item.get("url"):
            url = str(item["url"])
            if not url.startswith(("http://", "https://")):
                raise self._malformed(f"url {url[:60]!r} is not http(s)")
            raw = openai_http.fetch(
                "GET", url, self.endpoint, "the images API's result URL", auth=False
            )
        else:
            raise self._malformed("an image has neither b64_json nor url")
        try:
            with Image.open(io.BytesIO(raw)) as image:
                image.load()
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError):
            raise self._malformed("an image does not decode") from None

    def _malformed(self, what: str) -> Misconfigured:
        return Misconfigured(
            f"the images API at {self.endpoint.host} answered {what} (expected data[].b64_json "
            "or data[].url); check that PIXSEEK_T2I_MODEL's base URL speaks the OpenAI images API"
        )


_loaded: dict[str, HostedImages] = {}
_loaded_lock = threading.Lock()


def _endpoint(target: Target, settings: Any) -> openai_http.Endpoint:
    import os

    key_env = settings.t2i_api_key_env or "OPENAI_API_KEY"
    return openai_http.Endpoint(
        base_url=target.base_url,
        key=os.environ.get(key_env) or None,
        key_env=key_env,
        timeout_s=float(settings.t2i_api_timeout_s),
        attempts=max(1, int(settings.t2i_api_retries)),
    )


# -- the backend interface (pixseek/models/t2i_backends.py) ------------------------------------


def fingerprint(model: str) -> str:
    """Model + server + the options that change the pictures (the job adds size and prompt)."""
    size, quality = _options(_settings())
    return f"openai-images:{parse(model).name}|size={size or 'job'}|quality={quality or 'default'}"


def check(model: str) -> None:
    target = parse(model)
    settings = _settings()
    endpoint = _endpoint(target, settings)
    if not target.compatible and not endpoint.key:
        raise Misconfigured(
            f"{target.model} on the OpenAI API needs a key; set {endpoint.key_env} "
            "(or PIXSEEK_T2I_API_KEY_ENV to the variable that holds it)"
        )
    size, quality = _options(settings)
    HostedImages(target, endpoint, size, quality)  # validates the quality


def load(model: str, device: str = "auto") -> HostedImages:
    """The process-wide client for `model` (`device` is irrelevant to a hosted API)."""
    check(model)
    target, settings = parse(model), _settings()
    size, quality = _options(settings)
    endpoint = _endpoint(target, settings)
    key = f"{model}|{size}|{quality}|{endpoint.timeout_s}|{endpoint.attempts}|{endpoint.key_env}"
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = HostedImages(target, endpoint, size, quality)
        return _loaded[key]


def loaded() -> list[str]:
    with _loaded_lock:
        return sorted({key.split("|", 1)[0] for key in _loaded})
