"""Embedding models: OpenCLIP (images + text) and an optional DINOv2 image model."""

from pixseek.models.clip import ClipEmbedder, load_clip
from pixseek.models.device import pick_device
from pixseek.models.dino import DinoEmbedder, load_dino

__all__ = ["ClipEmbedder", "DinoEmbedder", "load_clip", "load_dino", "pick_device"]
