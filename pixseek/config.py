"""One typed settings object, read from PIXSEEK_* environment variables and an optional TOML file.

Precedence, highest first: environment variables, the TOML file, built-in defaults. The TOML file
is `$PIXSEEK_CONFIG` when set, else `pixseek.toml` inside the data directory when it exists. Keys in
the file are the field names below (e.g. `clip_model = "ViT-B-32"`), optionally under `[pixseek]`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pixseek.errors import UserError

ENV_PREFIX = "PIXSEEK_"


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "pixseek"


@dataclass(frozen=True)
class Settings:
    # Where the embedded Qdrant store, caches and generated images live.
    data_dir: Path = field(default_factory=_default_data_dir)
    # Set to use a Qdrant server or cluster instead of the embedded store.
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    # OpenCLIP model: a built-in name + pretrained tag, `hf-hub:org/repo`, or `local-dir:/path`.
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "laion2b_s34b_b79k"
    # Optional second image vector: a Hugging Face DINOv2 id or a local directory; empty = off.
    dino_model: str | None = None
    # "auto" picks CUDA when present; "cpu" / "cuda" / "cuda:1" force a device.
    device: str = "auto"
    batch_size: int = 32
    # Prompt templates for text queries ("{}" is replaced by the query); empty list = no ensembling.
    prompt_templates: tuple[str, ...] = (
        "a photo of {}.",
        "a photo of a {}.",
        "an image of {}.",
        "a picture of {}.",
    )
    # Celery broker / result backend; unset = generative jobs run in-process.
    broker_url: str | None = None
    result_backend: str | None = None
    # diffusers text-to-image pipeline: Hub id or local directory.
    t2i_model: str = "stabilityai/sd-turbo"
    # Generation defaults for jobs that do not set them (the defaults suit SD-Turbo).
    t2i_steps: int = 4
    t2i_size: int = 512
    t2i_guidance: float = 0.0  # 0 turns classifier-free guidance off
    # Images per pipeline call on the worker; lower it if the GPU runs out of memory.
    t2i_batch_size: int = 4
    # Hosted images APIs (PIXSEEK_T2I_MODEL=openai:MODEL or openai-compatible:MODEL@BASE_URL):
    # the environment variable holding the key, seconds per request, attempts on 429/5xx/timeouts,
    # and the API's size ("" = the job's WIDTHxHEIGHT, or "auto") and quality ("" = its default).
    t2i_api_key_env: str = "OPENAI_API_KEY"
    t2i_api_timeout_s: float = 120.0
    t2i_api_retries: int = 3
    t2i_api_size: str = ""
    t2i_api_quality: str = ""
    # Query rewriting before generation by an OpenAI-compatible chat model: MODEL (OpenAI) or
    # MODEL@BASE_URL; "" = off. The text half of a generative search still uses the query.
    t2i_rewrite_model: str = ""
    # Celery queue that generation jobs are routed to and GPU workers consume.
    job_queue: str = "gpu"
    # Hard time limit of one generation job in seconds; the soft limit (fails cleanly) is 90%.
    job_time_limit: int = 1800
    # Seconds after which Redis hands a job whose worker died to another worker; keep it above
    # the longest job. 0 = job_time_limit + 600.
    broker_visibility_timeout: int = 0
    # Required on every HTTP route but /health when set.
    api_key: str | None = None
    # HTTP API: the largest request body accepted (uploaded example images included), in bytes.
    api_max_upload_bytes: int = 20 * 1024 * 1024
    # HTTP API without a broker: generative jobs run in this many threads of the API process.
    api_job_threads: int = 1
    # HTTP API bounds on one request, checked before the expensive part (README "Limits").
    api_max_json_bytes: int = 256 * 1024  # a JSON body (uploads go as multipart)
    api_max_json_depth: int = 32
    api_max_json_members: int = 20_000  # array items + object members, all levels
    api_max_filter_depth: int = 16  # JSON nesting of a raw Qdrant filter
    api_max_filter_conditions: int = 1000  # conditions + listed values, all filters together
    api_max_query_chars: int = 1000  # `q` and `modify`
    api_max_query_terms: int = 32  # text terms + example images + `like` ids
    api_max_request_pixels: int = 64_000_000  # decoded pixels of all uploads of one request
    api_decode_timeout_s: float = 20.0  # decoding the uploads of one request
    api_body_timeout_s: float = 60.0  # the whole request body must arrive within this
    api_read_timeout_s: float = 15.0  # the longest silence while a body arrives
    # Absolute server paths in responses (payload.root, generated image paths): for single-user
    # local setups; off, hits carry the root's folder name only.
    api_show_paths: bool = False
    # Requests per minute per API key (or client address without one); 0 = no limit.
    api_rate_limit: int = 0
    # Origins allowed to call the API from a browser ("|"-separated); empty = no CORS headers.
    api_cors_origins: tuple[str, ...] = ()
    # POST /ingest: server-side folders that remote callers may ingest from ("|"-separated);
    # empty = the route is off. Local commands delegating to `pixseek serve` need no root.
    ingest_roots: tuple[str, ...] = ()
    # POST /ingest/upload: the largest tar/zip archive accepted, in bytes.
    ingest_max_upload_bytes: int = 2 * 1024**3
    # Pixels above which an image is refused as a possible decompression bomb.
    max_image_pixels: int = 178_956_970
    # Ingest: decoding threads feeding the model.
    decode_workers: int = 2
    # OCR (ingest/ocr.py): images read in parallel (one ONNX thread each), and the longest side
    # an image is scaled down to before text detection.
    ocr_workers: int = 2
    ocr_max_side: int = 1600
    # CLIP image inference (pixseek.models.accel). backend: auto | eager | jit | compile | onnx;
    # precision: auto | fp32 | fp16 | bf16 | int8. auto x auto on CPU = measured on this machine
    # (pixseek.models.accel_select: the fastest candidate within 0.999 cosine of fp32, cached in
    # cache_dir/accel/); eager fp16 on CUDA.
    backend: str = "auto"
    precision: str = "auto"
    # Intra-op threads for torch and ONNX Runtime; 0 = the library default (one per core).
    threads: int = 0
    # Run the image tower's convolution in channels-last memory format (eager/jit/compile).
    channels_last: bool = False
    # Text queries (pixseek.models.text_tower). auto: the text tower exported to ONNX (no torch
    # import; exported and verified against torch on the first text query), torch if it cannot
    # be; onnx: that export or an error; torch: always the PyTorch model. text_precision: fp32
    # (min cosine 0.9999 to torch) or int8 (>= 0.99).
    text_backend: str = "auto"
    text_precision: str = "fp32"
    # Query text embeddings kept on disk (cache_dir/query-embeddings.sqlite3); 0 = off.
    query_cache_entries: int = 100_000
    # Micro-batching of concurrent text queries (HTTP API): prompts per forward pass (1 = off)
    # and how long a burst may wait for more queries before its pass starts (a lone query never
    # waits). bench/results/text_batching.md has it against one pass per request.
    text_batch_max: int = 64
    text_batch_window_ms: int = 2
    # NLLB-CLIP text towers read a language code before the query (deu_Latn, jpn_Jpan, ...):
    # the language text queries are written in; empty = eng_Latn, the tokenizer's default.
    text_language: str = ""

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "collections"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def as_dict(self) -> dict[str, Any]:
        """The settings for display: keys, passwords and tokens masked, in URLs too."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if _SECRET_NAME.search(f.name) and value:
                value = "***"
            elif isinstance(value, str):
                value = mask_secrets(value)
            shown[f.name] = str(value) if isinstance(value, Path) else value
        return shown


_SECRET_NAME = re.compile(r"(api_key|password|secret|token)$", re.IGNORECASE)
# user:password@ in URLs, and secret-looking query parameters (?password=...&api_key=...).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)\S*@")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|api[_-]?key|apikey|token|secret|access_key)=)[^&;#\s]*",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """`redis://:pw@host` -> `redis://:***@host`; `?api_key=k` -> `?api_key=***`."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***@", text)
    return _QUERY_SECRET.sub(lambda m: m.group("head") + "***", text)


def _coerce(name: str, raw: Any, default: Any) -> Any:
    """Convert a raw env/TOML value to the type of the field's default."""
    if raw is None:
        return None
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            number = float(raw)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(raw)
            return number
        if isinstance(default, Path) or name == "data_dir":
            return Path(os.path.expanduser(str(raw)))
        if isinstance(default, tuple):
            if isinstance(raw, list | tuple):
                return tuple(str(item) for item in raw)
            return tuple(part for part in str(raw).split("|") if part)
    except ValueError:
        raise UserError(
            f"setting {name} has an invalid value {raw!r}; expected {type(default).__name__}"
        ) from None
    value = str(raw)
    return value or None if default is None else value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist; fix PIXSEEK_CONFIG") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    return data.get("pixseek", data)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    defaults = Settings()
    known = {f.name: getattr(defaults, f.name) for f in fields(Settings)}

    data_dir = Path(os.path.expanduser(env.get(ENV_PREFIX + "DATA_DIR", str(defaults.data_dir))))
    config_path = env.get(ENV_PREFIX + "CONFIG")
    file_values: dict[str, Any] = {}
    if config_path:
        file_values = _read_toml(Path(config_path))
    elif (data_dir / "pixseek.toml").is_file():
        file_values = _read_toml(data_dir / "pixseek.toml")
    unknown = sorted(set(file_values) - set(known))
    if unknown:
        raise UserError(f"unknown setting(s) in config file: {', '.join(unknown)}")

    values: dict[str, Any] = {}
    for name, default in known.items():
        env_key = ENV_PREFIX + name.upper()
        if env_key in env:
            values[name] = _coerce(name, env[env_key], default)
        elif name in file_values:
            values[name] = _coerce(name, file_values[name], default)
    settings = dataclasses.replace(defaults, **values)
    if settings.batch_size < 1:
        raise UserError("batch_size must be at least 1")
    return settings
