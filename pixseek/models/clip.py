"""OpenCLIP image and text embedder: L2-normalised float32 vectors, batched, loaded once per process.

Model identifiers follow open_clip: a built-in architecture name with a pretrained tag
(`ViT-B-32` + `laion2b_s34b_b79k`), `hf-hub:org/repo`, or `local-dir:/path` holding
`open_clip_config.json` and `open_clip_model.safetensors` (or `open_clip_pytorch_model.bin`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixseek.errors import UserError
from pixseek.models.device import pick_device, pick_dtype

LOCAL_DIR = "local-dir:"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

_cache: dict[tuple[str, str, str], ClipEmbedder] = {}
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
    ) -> None:
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = pick_dtype(device)
        self.identifier = identifier
        self.image_size = _image_size(model)
        with torch.inference_mode():
            probe = self.embed_texts(["probe"])
        self.dim = int(probe.shape[1])

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed a batch of already preprocessed images (N, 3, H, W)."""
        pixels = pixels.to(self.device, dtype=self.dtype, non_blocking=True)
        features = self.model.encode_image(pixels)
        return _normalise(features)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in images])
        return self.embed_pixels(pixels)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        features = self.model.encode_text(tokens)
        return _normalise(features)


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
        raise UserError(f"CLIP model directory {directory} does not exist; fix PIXSEEK_CLIP_MODEL")
    if not (directory / "open_clip_config.json").is_file():
        raise UserError(
            f"{directory} has no open_clip_config.json; a local CLIP model needs open_clip's "
            "local-dir layout (open_clip_config.json + open_clip_model.safetensors)"
        )
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise UserError(
            f"{directory} has no weights ({' or '.join(WEIGHT_FILES)}); "
            "copy the checkpoint there or point PIXSEEK_CLIP_MODEL elsewhere"
        )


def _build(model_name: str, pretrained: str, device: torch.device) -> ClipEmbedder:
    import open_clip

    if model_name.startswith(LOCAL_DIR):
        _check_local_dir(model_name[len(LOCAL_DIR) :])
    uses_schema = model_name.startswith((LOCAL_DIR, "hf-hub:"))
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=None if uses_schema else (pretrained or None),
            device=device,
            precision="fp16" if device.type == "cuda" else "fp32",
        )
        tokenizer = open_clip.get_tokenizer(model_name)
    except UserError:
        raise
    except Exception as exc:  # open_clip raises RuntimeError/ValueError/OSError variously
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"cannot load CLIP model {model_name!r} (pretrained {pretrained!r}): {reason[:300]}; "
            "check PIXSEEK_CLIP_MODEL / PIXSEEK_CLIP_PRETRAINED, or use local-dir:/path offline"
        ) from None
    model.eval()
    identifier = model_name if uses_schema else f"{model_name}/{pretrained or 'random'}"
    return ClipEmbedder(model, preprocess, tokenizer, device, identifier)


def load_clip(model_name: str, pretrained: str = "", device: str = "auto") -> ClipEmbedder:
    """Return the process-wide embedder for this model, loading it on first use."""
    torch_device = pick_device(device)
    key = (model_name, pretrained, str(torch_device))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _build(model_name, pretrained, torch_device)
        return _cache[key]
