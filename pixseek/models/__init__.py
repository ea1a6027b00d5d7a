"""Embedding models: OpenCLIP (images + text) and an optional DINOv2 image model.

The names below load lazily (PEP 562): importing a torch-free submodule such as
`pixseek.models.clip_tokenizer` or `pixseek.models.text_tower` must not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ClipEmbedder": "pixseek.models.clip",
    "load_clip": "pixseek.models.clip",
    "pick_device": "pixseek.models.device",
    "DinoEmbedder": "pixseek.models.dino",
    "load_dino": "pixseek.models.dino",
}

__all__ = ["ClipEmbedder", "DinoEmbedder", "load_clip", "load_dino", "pick_device"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixseek.models' has no attribute {name!r}")
