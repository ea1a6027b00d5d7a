"""Optional DINOv2 image embedder (Hugging Face transformers), stored as a second named vector.

DINOv2 captures visual similarity (layout, texture, instance identity) better than CLIP, which
helps image -> image search; it has no text tower, so text queries always use the CLIP vector.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixseek.errors import Misconfigured, first_line
from pixseek.models.device import pick_device, pick_dtype

_cache: dict[tuple[str, str], DinoEmbedder] = {}
_cache_lock = threading.Lock()


class DinoEmbedder:
    def __init__(self, model: torch.nn.Module, processor, device: torch.device, identifier: str):
        self.model = model
        self.processor = processor
        self.device = device
        self.dtype = pick_dtype(device)
        self.identifier = identifier
        self.dim = int(model.config.hidden_size)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        pixels = pixels.to(self.device, dtype=self.dtype, non_blocking=True)
        # pooler_output is the layer-normed CLS token, the embedding DINOv2 recommends for retrieval.
        features = self.model(pixel_values=pixels).pooler_output.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in images])
        return self.embed_pixels(pixels)


def _build(model_id: str, device: torch.device) -> DinoEmbedder:
    from transformers import AutoImageProcessor, AutoModel

    local = Path(model_id).expanduser()
    if model_id.startswith(("/", ".", "~")) and not local.is_dir():
        raise Misconfigured(
            f"DINOv2 model directory {local} does not exist; fix PIXSEEK_DINO_MODEL"
        )
    source = str(local) if local.is_dir() else model_id
    try:
        processor = AutoImageProcessor.from_pretrained(source)
        model = AutoModel.from_pretrained(source, dtype=pick_dtype(device)).to(device)
    except Exception as exc:
        reason = first_line(exc)
        raise Misconfigured(
            f"cannot load DINOv2 model {model_id!r}: {reason[:300]}; "
            "set PIXSEEK_DINO_MODEL to a Hub id or a local directory, or unset it"
        ) from None
    model.eval()
    return DinoEmbedder(model, processor, device, model_id)


def load_dino(model_id: str, device: str = "auto") -> DinoEmbedder:
    torch_device = pick_device(device)
    key = (model_id, str(torch_device))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _build(model_id, torch_device)
        return _cache[key]
