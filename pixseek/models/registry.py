"""The registry of image embedders, keyed by the named vector each one fills.

A collection stores one named vector per embedder (`clip` always, `dino` when configured) and
records in its metadata which model made each (`{"models": {"clip": "ViT-B-32/laion2b..."}}`).
Ingest, search and jobs all go through `check_compatible`, the one place that refuses to mix
embeddings of different models.

Adding a model family: write its module (a loader returning an object with `identifier`, `dim`,
`preprocess`, `embed_pixels`, `embed_images`) and add one `EmbedderFamily` line to `FAMILIES`.
This module imports no model library: loaders import theirs when called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pixseek.errors import Misconfigured

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from pixseek.config import Settings


class ImageEmbedder(Protocol):
    identifier: str  # recorded in the collection's metadata

    @property
    def dim(self) -> int: ...

    def preprocess(self, image: Image.Image) -> Any: ...

    def embed_pixels(self, batch: Any) -> np.ndarray: ...

    def embed_images(self, images: list[Image.Image]) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbedderFamily:
    vector: str  # the collection's named vector this family fills
    title: str  # how messages name it
    setting: str  # the PIXSEEK_* setting that names the model
    required: bool  # always present (clip) or enabled by its setting (dino)
    load: Callable[[Settings], ImageEmbedder | None]  # None when not configured


def _load_clip(settings: Settings) -> ImageEmbedder:
    from pixseek.models.clip import load_clip

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
    return clip


def _load_dino(settings: Settings) -> ImageEmbedder | None:
    if not settings.dino_model:
        return None
    from pixseek.models.dino import load_dino

    return load_dino(settings.dino_model, settings.device)


FAMILIES: dict[str, EmbedderFamily] = {
    "clip": EmbedderFamily("clip", "CLIP", "PIXSEEK_CLIP_MODEL", True, _load_clip),
    "dino": EmbedderFamily("dino", "DINOv2", "PIXSEEK_DINO_MODEL", False, _load_dino),
}


def load_embedders(settings: Settings) -> dict[str, ImageEmbedder]:
    """Every configured image embedder, by vector name, in registry order."""
    loaded: dict[str, ImageEmbedder] = {}
    for family in FAMILIES.values():
        embedder = family.load(settings)
        if embedder is not None:
            loaded[family.vector] = embedder
    return loaded


def check_compatible(
    collection: str,
    metadata: Mapping[str, Any] | None,
    sizes: Mapping[str, int],
    configured: Mapping[str, tuple[str, int]],
    *,
    writing: bool = False,
) -> None:
    """Refuse to mix embeddings of different models in one collection (one-line Misconfigured).

    `configured` maps vector name -> (model identifier, dimension) of the models at hand.
    `writing` (ingest) also requires every stored model vector to have its model configured,
    since each new point needs all of them; a search needs only the vectors it queries.
    """
    stored = dict((metadata or {}).get("models", {}))
    for vector, (identifier, dim) in configured.items():
        family = FAMILIES.get(vector)
        setting = family.setting if family else "the model setting"
        title = family.title if family else vector
        if vector not in sizes:
            if writing:
                raise Misconfigured(
                    f"collection {collection!r} has no {vector!r} vector; ingest into a new "
                    f"collection or unset {setting}"
                )
            continue
        if stored.get(vector) and stored[vector] != identifier:
            raise Misconfigured(
                f"collection {collection!r} was built with {title} model {stored[vector]!r}, "
                f"but {identifier!r} is configured; set {setting} to the collection's model "
                "or use a new collection"
            )
        if sizes[vector] != dim:
            raise Misconfigured(
                f"collection {collection!r} stores {sizes[vector]}-d {title} vectors, but the "
                f"configured model makes {dim}-d ones; use the collection's model"
            )
    if writing:
        # Only model-made vectors count: hash or keyword vectors need no model to be written.
        missing = {n for n in set(sizes) - set(configured) if n in FAMILIES or n in stored}
        if missing:
            settings = ", ".join(FAMILIES[m].setting for m in sorted(missing) if m in FAMILIES)
            raise Misconfigured(
                f"collection {collection!r} also stores {', '.join(sorted(missing))} vectors; "
                f"configure that model too ({settings or 'the same model settings'})"
            )
