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


# Text-to-image pipelines (diffusers). "tiny" is for tests: 64x64 images in well under a second on
# one CPU core. "sd-turbo" and "sd15" have the real architectures (Stable Diffusion 2.1-base as used
# by SD-Turbo, and Stable Diffusion 1.5), for timing; their images are noise, by construction.
_SD_BLOCKS = {
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "sample_size": 64,
}
T2I_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "tiny": {
        "unet": {
            "block_out_channels": [32, 64],
            "layers_per_block": 1,
            "sample_size": 64,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
            "norm_num_groups": 8,
        },
        "vae": {"block_out_channels": [32, 64], "norm_num_groups": 8, "sample_size": 128},
        "text": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "projection_dim": 32,
        },
        "scheduler": "euler-trailing",
    },
    "sd-turbo": {
        "unet": {
            **_SD_BLOCKS,
            "cross_attention_dim": 1024,
            "attention_head_dim": [5, 10, 20, 20],
            "use_linear_projection": True,
        },
        "vae": {"block_out_channels": [128, 256, 512, 512], "sample_size": 512},
        "text": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_attention_heads": 16,
            "num_hidden_layers": 23,
            "hidden_act": "gelu",
            "projection_dim": 512,
        },
        "scheduler": "euler-trailing",
    },
    "sd15": {
        "unet": {**_SD_BLOCKS, "cross_attention_dim": 768, "attention_head_dim": 8},
        "vae": {"block_out_channels": [128, 256, 512, 512], "sample_size": 512},
        "text": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "hidden_act": "quick_gelu",
            "projection_dim": 768,
        },
        "scheduler": "pndm",
    },
}


def clip_bpe_tokenizer(model_max_length: int = 77) -> Any:
    """The real CLIP BPE tokenizer (as in every Stable Diffusion), built offline from the
    vocabulary that ships inside open_clip_torch (`bpe_simple_vocab_16e6.txt.gz`)."""
    import gzip

    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "rt", encoding="utf-8") as handle:
        merges = handle.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m.split()) for m in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={token: index for index, token in enumerate(tokens)},
        merges=[tuple(m.split()) for m in merges],
        model_max_length=model_max_length,
    )


def random_t2i_pipeline(architecture: str = "tiny", seed: int = 0, device: str = "cpu") -> Any:
    """A StableDiffusionPipeline with random weights (built on `device`, fp32)."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    if architecture not in T2I_ARCHITECTURES:
        known = ", ".join(T2I_ARCHITECTURES)
        raise ValueError(f"unknown text-to-image architecture {architecture!r}; use one of {known}")
    spec = T2I_ARCHITECTURES[architecture]
    torch.manual_seed(seed)
    schedule = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    if spec["scheduler"] == "pndm":
        scheduler: Any = PNDMScheduler(
            **schedule, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False
        )
    else:
        scheduler = EulerDiscreteScheduler(**schedule, timestep_spacing="trailing", steps_offset=1)
    vae_blocks = len(spec["vae"]["block_out_channels"])
    with torch.device(device):
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **spec["unet"])
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=["DownEncoderBlock2D"] * vae_blocks,
            up_block_types=["UpDecoderBlock2D"] * vae_blocks,
            layers_per_block=1 if architecture == "tiny" else 2,
            **spec["vae"],
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                max_position_embeddings=77,
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=49407,
                **spec["text"],
            )
        )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_bpe_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_random_t2i(directory: Path, architecture: str = "tiny", seed: int = 0) -> Path:
    """A diffusers pipeline directory (model_index.json + components) with random weights."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    random_t2i_pipeline(architecture, seed).save_pretrained(directory)
    return directory
