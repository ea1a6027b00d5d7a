"""Query encoding: prompt-ensembled text embeddings with an in-process LRU cache, and images.

Prompt ensembling (CLIP paper, section 3.1.4): a query is embedded once per template ("a photo of
a {}.", ...), the unit vectors are averaged and the mean renormalised; this usually beats the bare
words. Templates come from settings (`prompt_templates`, "|"-separated in PIXSEEK_PROMPT_TEMPLATES);
an empty list or `ensemble=False` embeds the text as typed.

The model is loaded on first use only (a "more like this" query never needs it) and then stays
loaded: `query_encoder(settings)` returns one encoder per configuration for the whole process, so
the worker and the HTTP API reuse both the model and the embedding cache across requests.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from pixseek.config import Settings


class Embedder(Protocol):
    """What the encoder needs from a CLIP model (pixseek.models.clip.ClipEmbedder has it)."""

    identifier: str
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    size: int = 0


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if norm < 1e-12:
        raise ValueError("cannot normalise a zero vector")
    return vector / norm


def fill_template(template: str, text: str) -> str:
    # str.format would choke on braces in the user's text; "{}" is the only placeholder.
    return template.replace("{}", text) if "{}" in template else f"{template} {text}"


class QueryEncoder:
    """Turns query text and images into unit vectors in the collection's CLIP space."""

    def __init__(
        self,
        load: Callable[[], Embedder],
        templates: Sequence[str] = (),
        cache_size: int = 1024,
    ) -> None:
        self._load = load
        self._model: Embedder | None = None
        self.templates = tuple(templates)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, bool], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = CacheStats()

    @property
    def model(self) -> Embedder:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    @property
    def identifier(self) -> str:
        return self.model.identifier

    @property
    def dim(self) -> int:
        return self.model.dim

    def prompts(self, text: str, ensemble: bool = True) -> list[str]:
        if not ensemble or not self.templates:
            return [text]
        return [fill_template(template, text) for template in self.templates]

    def encode_text(self, text: str, ensemble: bool = True) -> np.ndarray:
        """The (ensembled) unit vector for `text`; cached, so repeated queries skip the model."""
        key = (text, ensemble and bool(self.templates))
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self._stats.hits += 1
                return cached
            self._stats.misses += 1
        vectors = self.model.embed_texts(self.prompts(text, ensemble))
        vector = unit(np.asarray(vectors, dtype=np.float32).mean(axis=0))
        vector.setflags(write=False)  # shared through the cache
        with self._lock:
            self._cache[key] = vector
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    def encode_image(self, image: Image.Image) -> np.ndarray:
        return unit(np.asarray(self.model.embed_images([image]), dtype=np.float32)[0])

    def cache_stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._stats.hits, self._stats.misses, len(self._cache))

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._stats = CacheStats()


_encoders: dict[tuple[str, str, str, tuple[str, ...]], QueryEncoder] = {}
_encoders_lock = threading.Lock()


def query_encoder(settings: Settings) -> QueryEncoder:
    """The process-wide encoder for these settings (model loaded lazily, then kept)."""
    key = (
        settings.clip_model,
        settings.clip_pretrained,
        settings.device,
        settings.prompt_templates,
    )
    with _encoders_lock:
        encoder = _encoders.get(key)
        if encoder is None:

            def load() -> Embedder:
                from pixseek.models.clip import load_clip

                return load_clip(settings.clip_model, settings.clip_pretrained, settings.device)

            encoder = QueryEncoder(load, settings.prompt_templates)
            _encoders[key] = encoder
        return encoder
