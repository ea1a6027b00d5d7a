"""The image embedders a collection uses, bundled by vector name (see `registry.FAMILIES`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixseek.config import Settings
from pixseek.models.registry import ImageEmbedder, check_compatible, load_embedders
from pixseek.store.base import CLIP_VECTOR


@dataclass
class ImageEmbedders:
    by_vector: dict[str, ImageEmbedder]  # "clip" always first

    @property
    def clip(self) -> Any:
        return self.by_vector[CLIP_VECTOR]

    @property
    def vector_sizes(self) -> dict[str, int]:
        return {name: embedder.dim for name, embedder in self.by_vector.items()}

    @property
    def metadata(self) -> dict[str, Any]:
        return {"models": {name: e.identifier for name, e in self.by_vector.items()}}

    def preprocess(self, image: Image.Image) -> dict[str, torch.Tensor]:
        """Per-image tensors for every vector; runs in decode worker threads."""
        return {name: embedder.preprocess(image) for name, embedder in self.by_vector.items()}

    def embed_pixels(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {name: e.embed_pixels(batch[name]) for name, e in self.by_vector.items()}

    def embed_images(self, images: list[Image.Image]) -> dict[str, np.ndarray]:
        return {name: e.embed_images(images) for name, e in self.by_vector.items()}

    def check_compatible(
        self, collection: str, metadata: dict[str, Any], sizes: dict[str, int]
    ) -> None:
        """Refuse to mix embeddings of different models in one collection."""
        configured = {name: (e.identifier, e.dim) for name, e in self.by_vector.items()}
        check_compatible(collection, metadata, sizes, configured, writing=True)


def load_image_embedders(settings: Settings) -> ImageEmbedders:
    return ImageEmbedders(load_embedders(settings))
