"""Query encoding: prompt-ensembled text embeddings with an in-process LRU cache, and images.

Prompt ensembling (CLIP paper, section 3.1.4): a query is embedded once per template ("a photo of
a {}.", ...), the unit vectors are averaged and the mean renormalised; this usually beats the bare
words. Templates come from settings (`prompt_templates`, "|"-separated in PIXSEEK_PROMPT_TEMPLATES);
an empty list or `ensemble=False` embeds the text as typed.

The model is loaded on first use only (a "more like this" query never needs it) and then stays
loaded: `query_encoder(settings)` returns one encoder per configuration for the whole process, so
the worker and the HTTP API reuse both the model and the embedding cache across requests.

Text goes through a separate text model when one is given (`load_text`): with the default
`text_backend = auto` that is the CLIP text tower exported to ONNX (pixseek.models.text_tower),
which needs neither torch nor open_clip, so a text search from the shell starts in a fraction of
a second. The first text query of a model without an export loads torch, exports and verifies
the tower (pixseek.models.text_export) and uses it from then on. Text embeddings are also kept
on disk (search.query_cache, keyed by weights hash, templates and text), and concurrent misses
share forward passes (search.text_batcher).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from pixseek.search.query_cache import FILE_NAME, QueryCache, cache_key
from pixseek.search.text_batcher import TextBatcher

if TYPE_CHECKING:
    from PIL import Image

    from pixseek.config import Settings
    from pixseek.models.text_tower import OnnxTextTower


class Embedder(Protocol):
    """What the encoder needs from a CLIP model (pixseek.models.clip.ClipEmbedder has it)."""

    identifier: str
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


class TextModel(Protocol):
    """A text-only model (pixseek.models.text_tower.OnnxTextTower has it)."""

    identifier: str
    dim: int
    cache_tag: str  # weights hash + graph: what the on-disk query cache is keyed by

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


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
        *,
        load_text: Callable[[], TextModel | None] | None = None,
        disk_cache: QueryCache | None = None,
        batch_max: int = 1,
        batch_window_s: float = 0.0,
    ) -> None:
        self._load = load
        self._model: Embedder | None = None
        self._load_text = load_text
        self._text: TextModel | Embedder | None = None
        self.templates = tuple(templates)
        self.cache_size = cache_size
        self.disk_cache = disk_cache
        self.batch_max, self.batch_window_s = batch_max, batch_window_s
        self.batcher: TextBatcher | None = None
        self.export_now = False  # export a missing text tower before answering (the CLI)
        self._cache: OrderedDict[tuple[str, bool], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._text_lock = threading.Lock()
        self._stats = CacheStats()
        self._before_encoding: Callable[[], None] | None = None

    def wait_before_encoding(self, wait: Callable[[], None]) -> None:
        """Call `wait` once before the next text is encoded (search.text_prefill's child)."""
        self._before_encoding = wait

    @property
    def model(self) -> Embedder:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    @property
    def text_model(self) -> TextModel | Embedder:
        """What embeds text: the separate text model when there is one, else the full model."""
        if self._text is None:
            with self._text_lock:
                if self._text is None:
                    text = self._load_text() if self._load_text is not None else None
                    self._set_text_model(text if text is not None else self.model)
        assert self._text is not None
        return self._text

    def use_text_model(self, model: TextModel) -> None:
        """Switch text queries to `model` (same embedding space), e.g. once its export is ready."""
        with self._text_lock:
            self._set_text_model(model)

    def _set_text_model(self, model: TextModel | Embedder) -> None:
        if self.batch_max > 1:
            self.batcher = TextBatcher(model.embed_texts, self.batch_max, self.batch_window_s)
        self._text = model

    @property
    def identifier(self) -> str:
        return self.text_model.identifier

    @property
    def dim(self) -> int:
        return self.text_model.dim

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
        vector = self._encode_uncached(text, ensemble)
        with self._lock:
            self._cache[key] = vector
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    def _disk_key(self, text: str, ensemble: bool) -> str | None:
        tag = getattr(self.text_model, "cache_tag", None)
        if self.disk_cache is None or not tag:
            return None
        return cache_key(tag, self.templates if ensemble and self.templates else (), text)

    def is_cached(self, text: str, ensemble: bool = True) -> bool:
        """Whether `text` is answered without the model (in memory or in the disk cache)."""
        with self._lock:
            if (text, ensemble and bool(self.templates)) in self._cache:
                return True
        key = self._disk_key(text, ensemble)
        return key is not None and self.disk_cache is not None and self.disk_cache.has(key)

    def _encode_uncached(self, text: str, ensemble: bool) -> np.ndarray:
        with self._lock:
            wait, self._before_encoding = self._before_encoding, None
        if wait is not None:
            wait()
        model = self.text_model
        prompts = self.prompts(text, ensemble)
        key = self._disk_key(text, ensemble)
        if key is not None and self.disk_cache is not None:
            cached = self.disk_cache.get(key)
            if cached is not None:
                return cached
        embed = self.batcher.embed if self.batcher is not None else model.embed_texts
        vector = unit(np.asarray(embed(prompts), dtype=np.float32).mean(axis=0))
        vector.setflags(write=False)  # shared through the cache
        if key is not None and self.disk_cache is not None:
            self.disk_cache.put(key, vector)
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


_encoders: dict[tuple, QueryEncoder] = {}
_encoders_lock = threading.Lock()
TEXT_BACKENDS = ("auto", "onnx", "torch")


def query_encoder(settings: Settings) -> QueryEncoder:
    """The process-wide encoder for these settings (model loaded lazily, then kept)."""
    key = (
        settings.clip_model,
        settings.clip_pretrained,
        settings.device,
        settings.prompt_templates,
        settings.text_backend,
        settings.text_precision,
        settings.cache_dir,
        settings.text_language,
    )
    with _encoders_lock:
        encoder = _encoders.get(key)
        if encoder is None:
            backend = settings.text_backend.strip().lower()
            if backend not in TEXT_BACKENDS:
                from pixseek.errors import Misconfigured

                raise Misconfigured(
                    f"unknown text backend {settings.text_backend!r}; use one of "
                    f"{', '.join(TEXT_BACKENDS)} (PIXSEEK_TEXT_BACKEND)"
                )

            def load() -> Embedder:
                from pixseek.models.clip import load_clip
                from pixseek.models.families import set_text_language

                clip = load_clip(settings.clip_model, settings.clip_pretrained, settings.device)
                set_text_language(clip, settings.text_language)
                return clip

            def load_text() -> TextModel | None:
                return _text_model(settings, backend, load, encoder)

            cache = None
            if settings.query_cache_entries > 0:
                cache = QueryCache(settings.cache_dir / FILE_NAME, settings.query_cache_entries)
            from pixseek.models.families import prompt_templates

            encoder = QueryEncoder(
                load,
                prompt_templates(settings.clip_model, settings.prompt_templates),
                load_text=None if backend == "torch" else load_text,
                disk_cache=cache,
                batch_max=settings.text_batch_max,
                batch_window_s=settings.text_batch_window_ms / 1000,
            )
            _encoders[key] = encoder
        return encoder


def warm_text_model(
    settings: Settings,
    texts: Sequence[str] | None = None,
    ensemble: bool = True,
    one_query: bool = False,
) -> None:
    """Start loading the text model in a thread: the CLI overlaps it with importing the store.
    `one_query`: the process answers one query (`pixseek search`), so the graph is opened for
    that (OnnxTextTower.prepare without prepacking) rather than for many.

    ONNX Runtime releases the GIL while it reads the graph, so this runs in parallel with the
    store's imports; an error is raised again where the text model is first used. When every
    one of `texts` is in the on-disk query cache, the graph and vocabulary are not read at all.
    """
    encoder = query_encoder(settings)
    encoder.export_now = True  # a short-lived process: the next command needs the export
    if one_query and texts and encoder._text is None:
        tower = None
        with contextlib.suppress(Exception):  # reported where the text is encoded
            tower = _exported_tower(settings)
        if tower is not None:
            from pixseek.search.text_prefill import prefill_in_child

            encoder.use_text_model(tower)
            if prefill_in_child(encoder, tower, texts, ensemble):
                return

    def load() -> None:
        from pixseek.models.text_tower import OnnxTextTower

        with contextlib.suppress(Exception):  # raised again in the caller's thread
            model = encoder.text_model
            if isinstance(model, OnnxTextTower) and not (
                texts and all(encoder.is_cached(text, ensemble) for text in texts)
            ):
                model.prepare(prepack=not one_query)

    if encoder._text is None:
        threading.Thread(target=load, name="pixseek-text-warm-up").start()


def _exported_tower(settings: Settings) -> OnnxTextTower | None:
    """The text tower's verified export when there is one and text runs on it; no export here."""
    if settings.text_backend.strip().lower() == "torch":
        return None
    from pixseek.models.text_tower import load_text_tower

    args = (settings.clip_model, settings.clip_pretrained, settings.cache_dir)
    return load_text_tower(*args, settings.text_precision, settings.threads)


export_log = logging.getLogger("pixseek.text_export")
_export_children: list[subprocess.Popen] = []


@atexit.register
def _stop_export_children() -> None:
    # A process that exits while its export child still runs stops the child: the next
    # long-lived process starts the export again (the cache is written atomically).
    for child in _export_children:
        if child.poll() is None:
            child.terminate()


def _export_in_child(settings: Settings, encoder: QueryEncoder) -> None:
    """Export in a child process, then switch the encoder to the verified tower.

    Not in a thread of this process: torch's exporter changes process-wide state (fake-tensor
    modes), and text queries answered on torch meanwhile failed. Nor may a thread redirect
    sys.stdout (process-wide) to hide the exporter's chatter.
    """
    from pixseek.models.text_tower import load_text_tower

    args = [settings.clip_model, settings.clip_pretrained, str(settings.cache_dir)]
    args += [settings.text_precision, str(settings.threads)]
    child = subprocess.Popen(
        [sys.executable, "-m", "pixseek.models.text_export", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _export_children.append(child)
    _, errors = child.communicate()
    if child.returncode != 0:
        lines = [line for line in (errors or "").splitlines() if line.strip()]
        export_log.warning(
            "text tower export failed (%s); text queries keep using torch",
            lines[-1] if lines else f"exit {child.returncode}",
        )
        return
    tower = load_text_tower(
        settings.clip_model,
        settings.clip_pretrained,
        settings.cache_dir,
        settings.text_precision,
        settings.threads,
    )
    if tower is not None:
        encoder.use_text_model(tower)


def _text_model(
    settings: Settings, backend: str, load: Callable[[], Embedder], encoder: QueryEncoder
) -> TextModel | None:
    """The exported text tower (exported now if needed); None = embed text with torch.

    In a long-lived process (API, worker) the export runs in a thread while torch answers, and
    the encoder switches over when it is ready; the CLI (`export_now`) exports before answering,
    so the next command starts without torch.
    """
    tower = _exported_tower(settings)
    if tower is not None:
        return tower
    args = (settings.clip_model, settings.clip_pretrained, settings.cache_dir)
    from pixseek.models.families import detect
    from pixseek.models.text_export import export_text_tower, try_export

    family = detect(settings.clip_model)
    if not family.torch_free_text and backend != "onnx":
        export_log.info(
            "%s model: its text tower has no torch-free path (%s tokenizer); text queries run "
            "on torch",
            family.title,
            family.tokenizer,
        )
        return None
    export_log.info(
        "exporting the CLIP text tower to ONNX once, so later text searches start without torch"
    )
    export = export_text_tower if backend == "onnx" else try_export
    if backend == "auto" and not encoder.export_now:
        threading.Thread(
            target=_export_in_child,
            args=(settings, encoder),
            name="pixseek-text-export",
            daemon=True,
        ).start()
        return None
    tower = export(load(), *args, settings.text_precision, settings.threads)
    if tower is None and backend == "onnx":
        from pixseek.errors import Misconfigured

        raise Misconfigured(
            f"text_backend is onnx, but the text tower of {settings.clip_model!r} cannot be "
            "exported and verified; set PIXSEEK_TEXT_BACKEND=auto or torch"
        )
    return tower
