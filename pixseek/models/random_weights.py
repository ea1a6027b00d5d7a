"""Write randomly initialised models in the same on-disk layouts as real checkpoints.

For tests, benchmarks and smoke runs on machines that cannot download weights: the loading code
is the real one (`local-dir:` for open_clip, a transformers directory for DINOv2), only the
numbers are random. Results from such models are chance-level, by construction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

TINY_CLIP: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def write_random_clip(directory: Path, architecture: str = "tiny", seed: int = 0) -> Path:
    """Create `directory` in open_clip's local-dir layout; returns it.

    `architecture` is "tiny" (a 2-layer ViT for tests) or any open_clip built-in name such as
    "ViT-B-32" (same FLOPs as the real model, random weights).
    """
    import open_clip
    from safetensors.torch import save_model

    if architecture == "tiny":
        model_cfg = TINY_CLIP
    else:
        model_cfg = open_clip.get_model_config(architecture)
        if model_cfg is None:
            raise ValueError(f"unknown open_clip architecture {architecture!r}")
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "open_clip_config.json"
    config_path.write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}, indent=2))
    if architecture == "tiny":
        from open_clip.model import CLIP

        model = CLIP(**model_cfg)
    else:
        model = open_clip.create_model(architecture)
    save_model(model, str(directory / "open_clip_model.safetensors"))
    return directory


def write_random_dino(directory: Path, tiny: bool = True, seed: int = 0) -> Path:
    """A DINOv2 model directory (config.json, weights, preprocessor_config.json)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    if tiny:
        config = Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=28,
            patch_size=14,
        )
        crop = 28
    else:  # dinov2-small geometry
        config = Dinov2Config(
            hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536
        )
        crop = 224
    Dinov2Model(config).save_pretrained(directory)
    processor = BitImageProcessor(
        size={"shortest_edge": crop},
        crop_size={"height": crop, "width": crop},
        do_center_crop=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    processor.save_pretrained(directory)
    return directory
