"""The image embedders a collection uses, bundled: CLIP always, DINOv2 when configured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixseek.config import Settings
from pixseek.errors import UserError
from pixseek.models.clip import ClipEmbedder, load_clip
from pixseek.models.dino import DinoEmbedder, load_dino
from pixseek.store.base import CLIP_VECTOR, DINO_VECTOR


@dataclass
class ImageEmbedders:
    clip: ClipEmbedder
    dino: DinoEmbedder | None = None

    @property
    def vector_sizes(self) -> dict[str, int]:
        sizes = {CLIP_VECTOR: self.clip.dim}
        if self.dino is not None:
            sizes[DINO_VECTOR] = self.dino.dim
        return sizes

    @property
    def metadata(self) -> dict[str, Any]:
        models = {CLIP_VECTOR: self.clip.identifier}
        if self.dino is not None:
            models[DINO_VECTOR] = self.dino.identifier
        return {"models": models}

    def preprocess(self, image: Image.Image) -> dict[str, torch.Tensor]:
        """Per-image tensors for every vector; runs in decode worker threads."""
        tensors = {CLIP_VECTOR: self.clip.preprocess(image)}
        if self.dino is not None:
            tensors[DINO_VECTOR] = self.dino.preprocess(image)
        return tensors

    def embed_pixels(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        vectors = {CLIP_VECTOR: self.clip.embed_pixels(batch[CLIP_VECTOR])}
        if self.dino is not None:
            vectors[DINO_VECTOR] = self.dino.embed_pixels(batch[DINO_VECTOR])
        return vectors

    def embed_images(self, images: list[Image.Image]) -> dict[str, np.ndarray]:
        vectors = {CLIP_VECTOR: self.clip.embed_images(images)}
        if self.dino is not None:
            vectors[DINO_VECTOR] = self.dino.embed_images(images)
        return vectors

    def check_compatible(
        self, collection: str, metadata: dict[str, Any], sizes: dict[str, int]
    ) -> None:
        """Refuse to mix embeddings of different models in one collection."""
        stored = metadata.get("models", {})
        for vector, identifier in self.metadata["models"].items():
            if vector not in sizes:
                raise UserError(
                    f"collection {collection!r} has no {vector!r} vector; ingest into a new "
                    f"collection or unset the setting that enables {vector}"
                )
            if stored.get(vector) and stored[vector] != identifier:
                raise UserError(
                    f"collection {collection!r} was built with {vector} model {stored[vector]!r}, "
                    f"but {identifier!r} is configured; use the same model or a new collection"
                )
        missing = set(sizes) - set(self.vector_sizes)
        if missing:
            raise UserError(
                f"collection {collection!r} also stores {', '.join(sorted(missing))} vectors; "
                "configure that model too (e.g. PIXSEEK_DINO_MODEL)"
            )


def load_image_embedders(settings: Settings) -> ImageEmbedders:
    clip = load_clip(
        settings.clip_model,
        settings.clip_pretrained,
        settings.device,
        backend=settings.backend,
        precision=settings.precision,
        threads=settings.threads,
        channels_last=settings.channels_last,
        cache_dir=settings.cache_dir,
    )
    clip.prepare()  # export / quantise / compile before the ingest clock starts
    dino = load_dino(settings.dino_model, settings.device) if settings.dino_model else None
    return ImageEmbedders(clip=clip, dino=dino)
