"""OpenCLIP image and text embedder: L2-normalised float32 vectors, batched, loaded once per process.

Model identifiers follow open_clip: a built-in architecture name with a pretrained tag
(`ViT-B-32` + `laion2b_s34b_b79k`), `hf-hub:org/repo`, or `local-dir:/path` holding
`open_clip_config.json` and `open_clip_model.safetensors` (or `open_clip_pytorch_model.bin`).

Images run through the configured inference back-end (`backend`, `precision`, `threads`,
`channels_last` settings; see pixseek.models.accel), built lazily on the first image batch.
Texts always run through the PyTorch model (fp32 on CPU, the model's dtype on CUDA), without the
padding after the longest prompt's end token (see `_encode_text_trimmed`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixseek.errors import Misconfigured, PixseekError, UserError, first_line
from pixseek.models import accel, accel_select, families
from pixseek.models.device import pick_device
from pixseek.models.fast_preprocess import FastPreprocess

LOCAL_DIR = "local-dir:"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

_cache: dict[tuple, ClipEmbedder] = {}
_cache_lock = threading.Lock()


class ClipEmbedder:
    """Wraps an open_clip model with its image transform and tokenizer."""

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[Sequence[str]], torch.Tensor],
        device: torch.device,
        identifier: str,
        spec: accel.AccelSpec | None = None,
    ) -> None:
        self.model = model
        self.preprocess = FastPreprocess(preprocess)
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self.identifier = identifier
        self.image_size = _image_size(model)
        self.spec = spec or accel.AccelSpec(precision="fp32", backend="eager")
        self.resolved = accel.resolve(self.spec, device)
        self._select = accel_select.wanted(self.spec, device)
        self._runner: accel.Runner | None = None
        self._runner_lock = threading.Lock()
        self._fingerprint: str | None = None
        self.decision: accel_select.Decision | None = None  # auto x auto on CPU: measured choice
        self.family = families.CLIP  # set by _build from the model's config
        self._trim_text = False
        self._trim_text = self._check_text_trim()
        with torch.inference_mode():
            probe = self.embed_texts(["probe"])
        self.dim = int(probe.shape[1])

    @property
    def backend(self) -> str:
        return self.resolved.backend

    @property
    def precision(self) -> str:
        return self.resolved.precision

    def describe(self) -> dict[str, object]:
        """The inference setting in use, for summaries and benchmark reports."""
        guard = self._runner if isinstance(self._runner, accel.Guarded) else None
        return {
            "backend": self.backend,
            "precision": self.precision,
            "threads": self.spec.threads or torch.get_num_threads(),
            "channels_last": self.spec.channels_last,
            "verified_against_fp32": None if guard is None else guard.trusted,
            "chosen_by": "measurement" if self.decision else "setting",
        }

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = accel.weights_fingerprint(self.model.visual)
        return self._fingerprint

    def prepare(self, sample: torch.Tensor | None = None) -> None:
        """Build the image back-end now (export, quantise, compile) instead of on first use.

        A setting chosen by measurement (accel_select) needs real images: without a cached
        decision it waits for a `sample` of at least SELECT_MIN_IMAGES images.
        """
        if self._runner is None:
            with self._runner_lock:
                if self._runner is None:
                    self._runner = self._build_runner(sample)

    def _build_runner(self, sample: torch.Tensor | None = None) -> accel.Runner | None:
        visual = self.model.visual
        spec = self.spec
        if self._select and self.decision is None:
            self.decision = self._cached_decision()
            if self.decision is None and (
                sample is None or len(sample) < accel_select.SELECT_MIN_IMAGES
            ):
                return None  # measured on the first batch of real images
            self.decision = self.decision or accel_select.choose(self, sample)
        if self._select and self.decision is not None:
            chosen = self.decision.chosen
            lossy = accel.is_lossy(chosen.precision, self.device)
            self.resolved = accel.Resolved(chosen.backend, chosen.precision, guarded=lossy)
            spec = dataclasses.replace(spec, channels_last=chosen.channels_last)
        try:
            fast = accel.build_runner(visual, self.resolved, spec, self.device, self.fingerprint)
        except UserError as exc:
            if self.spec.backend.strip().lower() != "auto" or self.resolved.backend == "eager":
                raise
            # The automatic choice must never stop an ingest: fall back to plain PyTorch.
            accel.log.warning("%s; falling back to the eager backend", exc)
            self._select = False
            self.resolved = accel.resolve(
                dataclasses.replace(self.spec, backend="eager"), self.device
            )
            return self._build_runner()
        if not self.resolved.guarded:
            return fast
        exact = accel.Resolved("eager", "fp32", guarded=False)
        reference = accel.build_runner(visual, exact, spec, self.device, self.fingerprint)
        verdicts = None
        if self.spec.cache_dir is not None:
            name = f"{self.fingerprint()}-{self.backend}-{self.precision}.json"
            verdicts = self.spec.cache_dir / "fidelity" / name
        return accel.Guarded(fast, reference, verdicts)

    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed a batch of already preprocessed images (N, 3, H, W)."""
        self.prepare(pixels)
        if self._runner is None:  # too few images to measure the automatic choice on yet
            return _normalise(self._exact(pixels))
        return _normalise(self._runner(pixels))

    def _cached_decision(self) -> accel_select.Decision | None:
        key = accel_select.machine_key(self.fingerprint(), self.device)
        return accel_select.load_decision(self.spec.cache_dir, key)

    def _exact(self, pixels: torch.Tensor) -> torch.Tensor:
        exact = accel.Resolved("eager", "fp32", guarded=False)
        run = accel.build_runner(self.model.visual, exact, self.spec, self.device, self.fingerprint)
        return run(pixels)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in images])
        return self.embed_pixels(pixels)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        if self._trim_text:
            return _normalise(_encode_text_trimmed(self.model, tokens))
        return _normalise(self.model.encode_text(tokens))

    def _check_text_trim(self) -> bool:
        """Use the trimmed text path only if it reproduces open_clip's on a probe sentence."""
        if not _can_trim_text(self.model):
            return False
        try:
            with torch.inference_mode():
                tokens = self.tokenizer(["a photo of a probe.", "probe"]).to(self.device)
                full = self.model.encode_text(tokens).float()
                trimmed = _encode_text_trimmed(self.model, tokens).float()
        except Exception:  # another open_clip layout: keep open_clip's own path
            return False
        cosine = torch.nn.functional.cosine_similarity(full, trimmed, dim=-1)
        return bool(cosine.min() > 0.9999)


def _can_trim_text(model: torch.nn.Module) -> bool:
    from open_clip.model import CLIP

    return (
        type(model) is CLIP
        and getattr(model, "attn_mask", None) is not None  # causal: later tokens never count
        and getattr(model, "text_pool_type", None) in ("argmax", "eos")
    )


def _encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.encode_text without the padding after the longest prompt's end token.

    Texts are padded to 77 tokens, but the causal mask stops the pooled end-of-text position
    from attending to anything after it, so cutting the padding gives the same features
    (within float rounding) for a fraction of the work: a 4-template query is ~10 tokens each.
    """
    from open_clip.transformer import text_global_pool

    eos_id = getattr(model, "text_eos_id", None)
    if model.text_pool_type == "eos" and eos_id is not None:
        ends = (tokens == eos_id).int().argmax(dim=-1)
    else:
        ends = tokens.argmax(dim=-1)
    length = int(ends.max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=eos_id)
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def _normalise(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return features.cpu().numpy().astype(np.float32, copy=False)


def _image_size(model: torch.nn.Module) -> int:
    size = getattr(getattr(model, "visual", None), "image_size", 224)
    return int(size[0] if isinstance(size, tuple | list) else size)


def _check_local_dir(path: str) -> None:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise Misconfigured(
            f"CLIP model directory {directory} does not exist; fix PIXSEEK_CLIP_MODEL"
        )
    if not (directory / "open_clip_config.json").is_file():
        raise Misconfigured(
            f"{directory} has no open_clip_config.json; a local CLIP model needs open_clip's "
            "local-dir layout (open_clip_config.json + open_clip_model.safetensors)"
        )
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise Misconfigured(
            f"{directory} has no weights ({' or '.join(WEIGHT_FILES)}); "
            "copy the checkpoint there or point PIXSEEK_CLIP_MODEL elsewhere"
        )


_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
)
_init_lock = threading.Lock()


@contextlib.contextmanager
def _skip_random_init(enabled: bool) -> Iterator[None]:
    """torch.nn.init functions as no-ops while a model that a checkpoint will fill is built.

    (transformers' `no_init_weights` does the same.) Only used when open_clip will load a full
    checkpoint with strict=True, so a weight left uninitialised would be a load error, not noise.
    """
    if not enabled:
        yield
        return

    def keep(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return tensor

    with _init_lock:
        saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}
        for name in saved:
            setattr(torch.nn.init, name, keep)
        try:
            yield
        finally:
            for name, function in saved.items():
                setattr(torch.nn.init, name, function)


def _build(
    model_name: str, pretrained: str, device: torch.device, spec: accel.AccelSpec
) -> ClipEmbedder:
    import open_clip

    if model_name.startswith(LOCAL_DIR):
        _check_local_dir(model_name[len(LOCAL_DIR) :])
    resolved = accel.resolve(spec, device)  # bad settings fail before the weights are read
    dtype = accel.model_dtype(resolved, device)
    precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")
    uses_schema = model_name.startswith((LOCAL_DIR, "hf-hub:"))
    config = families.model_config(model_name)
    family = families.detect(model_name, config)
    mismatch = families.check_config(model_name, config)
    if mismatch:
        raise Misconfigured(f"{model_name}: {mismatch}")
    try:
        # With a checkpoint, open_clip loads every weight strictly after building the model, so
        # the random initialisation before it is wasted (most of a ViT-B-32 load; see
        # bench/results/profile_search.md).
        with _skip_random_init(uses_schema or bool(pretrained)):
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name,
                pretrained=None if uses_schema else (pretrained or None),
                device=device,
                precision=precision,
                **families.preprocess_overrides(model_name, pretrained),
            )
        tokenizer = open_clip.get_tokenizer(model_name)
    except PixseekError:
        raise
    except Exception as exc:  # open_clip raises RuntimeError/ValueError/OSError variously
        reason = first_line(exc)
        raise Misconfigured(
            f"cannot load CLIP model {model_name!r} (pretrained {pretrained!r}): {reason[:300]}; "
            "check PIXSEEK_CLIP_MODEL / PIXSEEK_CLIP_PRETRAINED, or use local-dir:/path offline"
        ) from None
    model.eval()
    identifier = model_name if uses_schema else f"{model_name}/{pretrained or 'random'}"
    embedder = ClipEmbedder(model, preprocess, tokenizer, device, identifier, spec)
    embedder.family = family
    return embedder


def load_clip(
    model_name: str,
    pretrained: str = "",
    device: str = "auto",
    *,
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    channels_last: bool | None = None,
    cache_dir: Path | None = None,
) -> ClipEmbedder:
    """Return the process-wide embedder for this model, loading it on first use.

    Inference settings left as None come from the environment / config file (load_settings),
    so every caller in a process shares one model and one back-end.
    """
    torch_device = pick_device(device)
    if None in (backend, precision, threads, channels_last, cache_dir):
        from pixseek.config import load_settings

        settings = load_settings()
        backend = settings.backend if backend is None else backend
        precision = settings.precision if precision is None else precision
        threads = settings.threads if threads is None else threads
        channels_last = settings.channels_last if channels_last is None else channels_last
        cache_dir = settings.cache_dir if cache_dir is None else cache_dir
    spec = accel.AccelSpec(
        str(backend), str(precision), int(threads or 0), bool(channels_last), Path(str(cache_dir))
    )
    accel.resolve(spec, torch_device)  # one-line error for bad settings, cached or not
    accel.apply_threads(spec.threads)
    # The cache directory only says where artefacts live: one embedder per setting per process.
    key = (model_name, pretrained, str(torch_device), dataclasses.replace(spec, cache_dir=None))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _build(model_name, pretrained, torch_device, spec)
        return _cache[key]
