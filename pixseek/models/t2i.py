"""Text-to-image generation with diffusers: any text-to-image pipeline, loaded lazily once per process.

`PIXSEEK_T2I_MODEL` is a Hub id (`stabilityai/sd-turbo`, `runwayml/stable-diffusion-v1-5`, ...) or a
local directory written by `save_pretrained` (holding `model_index.json`). The pipeline class is
picked by diffusers' `AutoPipelineForText2Image` (Stable Diffusion 1.x/2.x, SDXL, PixArt, Kandinsky,
Flux, ...), with a plain `DiffusionPipeline` as fallback for classes it does not map.

On CUDA the pipeline runs in fp16 with the VAE decoding one image at a time (slicing) and in tiles
above its native size (tiling); on GPUs with little memory, and with `accelerate` installed,
components are offloaded to the CPU between uses. On CPU it runs in fp32.

Loading happens on first use in the process that generates. A Celery prefork worker therefore loads
the pipeline in its child process, never in the parent before the fork (CUDA does not survive a
fork); the cache below is also keyed by process id, so a forked child never reuses a parent's copy.
Latents are drawn from CPU generators seeded per image, so a seed gives the same image on any
device (up to floating-point differences) and in any batch.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pixseek.errors import Misconfigured, PixseekError, UserError
from pixseek.models.device import pick_device, pick_dtype
from pixseek.models.generation import GenerationParams

log = logging.getLogger(__name__)

# On GPUs with less memory than this, components are offloaded to the CPU between uses.
OFFLOAD_BELOW_BYTES = 10 * 1024**3

StepCallback = Callable[[int, int], None]  # (step done, steps in this batch)


@dataclass
class Generated:
    image: Image.Image
    seed: int
    flagged: bool = False  # the pipeline's safety checker blanked this image


def is_local_model(model: str) -> bool:
    """A path (absolute, relative or ~) rather than a Hub id like `org/name`."""
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().is_dir()


def model_fingerprint(model: str) -> str:
    """A cheap identity for cache keys: Hub id, or resolved path + when its weights last changed.

    Computed without loading the pipeline, so fully cached jobs never load it.
    """
    if not is_local_model(model):
        return model
    directory = Path(model).expanduser().resolve()
    index = directory / "model_index.json"
    try:
        stamp = max(
            [index.stat().st_mtime_ns]
            + [p.stat().st_mtime_ns for p in directory.glob("*/*.safetensors")]
        )
    except OSError:
        stamp = 0
    return f"{directory}@{stamp}"


class TextToImage:
    """A loaded diffusers pipeline and what pixseek needs to know about it."""

    def __init__(self, pipeline: Any, identifier: str, device: torch.device) -> None:
        self.pipeline = pipeline
        self.identifier = identifier
        self.device = device
        self._lock = threading.Lock()  # a pipeline is not safe to call from two threads at once
        params = inspect.signature(pipeline.__call__).parameters
        self._accepts = set(params)
        self._lenient = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if hasattr(pipeline, "set_progress_bar_config"):
            pipeline.set_progress_bar_config(disable=True)

    def _takes(self, name: str) -> bool:
        return name in self._accepts

    @property
    def max_prompt_tokens(self) -> int | None:
        tokenizer = getattr(self.pipeline, "tokenizer", None)
        limit = getattr(tokenizer, "model_max_length", None)
        return int(limit) if isinstance(limit, int) and 0 < limit < 100_000 else None

    def count_tokens(self, text: str) -> int | None:
        tokenizer = getattr(self.pipeline, "tokenizer", None)
        if tokenizer is None:
            return None
        return len(tokenizer(text, truncation=False).input_ids)

    def check_prompt(self, text: str, what: str = "prompt") -> None:
        """Refuse prompts the text encoder would silently truncate."""
        limit = self.max_prompt_tokens
        if limit is None or not text:
            return
        count = self.count_tokens(text)
        if count is not None and count > limit:
            raise UserError(
                f"the {what} is {count} tokens long, but {self.identifier} reads at most {limit}; "
                "shorten it"
            )

    def check_size(self, width: int, height: int) -> None:
        factor = int(getattr(self.pipeline, "vae_scale_factor", 8) or 8)
        if width % factor or height % factor:
            raise UserError(
                f"image size {width}x{height} must be a multiple of {factor} for {self.identifier}"
            )

    def generate(
        self,
        params: GenerationParams,
        seeds: Sequence[int],
        on_step: StepCallback | None = None,
    ) -> list[Generated]:
        """One image per seed, in one batch; `on_step` may raise to abort between steps."""
        if not seeds:
            return []
        kwargs: dict[str, Any] = {
            "prompt": params.prompt,
            "num_inference_steps": params.steps,
            "guidance_scale": params.guidance,
            "height": params.height,
            "width": params.width,
            "num_images_per_prompt": len(seeds),
            "generator": [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds],
            "output_type": "pil",
        }
        if params.negative_prompt:
            if not (self._takes("negative_prompt") or self._lenient):
                raise UserError(f"{self.identifier} does not take a negative prompt; leave it out")
            kwargs["negative_prompt"] = params.negative_prompt
        if on_step is not None and self._takes("callback_on_step_end"):
            steps = params.steps

            def step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
                on_step(step + 1, steps)
                return tensors

            kwargs["callback_on_step_end"] = step_end
        kwargs = {k: v for k, v in kwargs.items() if self._takes(k) or self._lenient}
        with self._lock, torch.inference_mode():
            output = self.pipeline(**kwargs)
        images = list(output.images)
        flags = getattr(output, "nsfw_content_detected", None) or [False] * len(images)
        return [
            Generated(image=image.convert("RGB"), seed=int(seed), flagged=bool(flag))
            for image, seed, flag in zip(images, seeds, flags, strict=False)
        ]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def check_source(model: str) -> str:
    """The path or Hub id to load; a local directory must hold a diffusers pipeline."""
    if not is_local_model(model):
        return model
    source = str(Path(model).expanduser())
    if not (Path(source) / "model_index.json").is_file():
        raise Misconfigured(
            f"text-to-image model directory {source} does not exist or has no model_index.json; "
            "set PIXSEEK_T2I_MODEL to a Hub id or a directory written by save_pretrained"
        )
    return source


def _load_pipeline(model: str, dtype: torch.dtype) -> Any:
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline
    from diffusers.utils import deprecation_utils
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
    # diffusers renamed `torch_dtype` to `dtype` (the old name still works, with a warning).
    renamed = hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
    options = {"dtype" if renamed else "torch_dtype": dtype}
    source = check_source(model)
    try:
        try:
            return AutoPipelineForText2Image.from_pretrained(source, **options)
        except ValueError as exc:  # a pipeline class the auto-mapping does not know
            if "AutoPipeline" not in str(exc):
                raise
            pipeline = DiffusionPipeline.from_pretrained(source, **options)
            if "prompt" not in inspect.signature(pipeline.__call__).parameters:
                raise UserError(
                    f"{model} is a {type(pipeline).__name__}, not a text-to-image pipeline"
                ) from None
            return pipeline
    except PixseekError:
        raise
    except Exception as exc:  # diffusers / huggingface_hub raise OSError, ValueError, HTTP errors
        raise Misconfigured(
            f"cannot load text-to-image model {model!r}: {_reason(exc)}; set PIXSEEK_T2I_MODEL to "
            "a diffusers Hub id or a local directory (offline, the Hub id must be in the HF cache)"
        ) from None


def _place(pipeline: Any, device: torch.device) -> None:
    """Move to the device with the memory savers that fit it."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        offload = total < OFFLOAD_BELOW_BYTES and hasattr(pipeline, "enable_model_cpu_offload")
        if offload:
            try:
                pipeline.enable_model_cpu_offload(device=device)
            except (ImportError, RuntimeError) as exc:  # needs accelerate
                log.warning("model CPU offload unavailable (%s); keeping the pipeline on GPU", exc)
                offload = False
        if not offload:
            pipeline.to(device)
        vae = getattr(pipeline, "vae", None)
        for saver in ("enable_slicing", "enable_tiling"):
            if hasattr(vae, saver):
                getattr(vae, saver)()
        unet = getattr(pipeline, "unet", None)
        if unet is not None:
            unet.to(memory_format=torch.channels_last)
    else:
        pipeline.to(device)


def wrap_pipeline(pipeline: Any, identifier: str, device: torch.device) -> TextToImage:
    """Place an already built pipeline (e.g. random weights in a benchmark) on `device`."""
    _place(pipeline, device)
    return TextToImage(pipeline, identifier, device)


_cache: dict[tuple[int, str, str], TextToImage] = {}
_cache_lock = threading.Lock()


def load_t2i(model: str, device: str = "auto") -> TextToImage:
    """The process-wide pipeline for `model`, loaded on first use in this process."""
    torch_device = pick_device(device)
    key = (os.getpid(), model, str(torch_device))
    with _cache_lock:
        if key not in _cache:
            for stale in [k for k in _cache if k[0] != os.getpid()]:
                del _cache[stale]  # inherited through fork: never use a parent's pipeline
            pipeline = _load_pipeline(model, pick_dtype(torch_device))
            _cache[key] = wrap_pipeline(pipeline, model, torch_device)
        return _cache[key]


def loaded_models() -> list[str]:
    """Models loaded in this process (for logs and tests)."""
    with _cache_lock:
        return [key[1] for key in _cache if key[0] == os.getpid()]


# -- the backend interface (pixseek/models/t2i_backends.py) ------------------------------------
fingerprint = model_fingerprint
load = load_t2i
loaded = loaded_models


def check(model: str) -> None:
    check_source(model)
