"""The CLIP text tower without torch: an exported ONNX graph, a numpy tokenizer, ONNX Runtime.

A text query from the shell should not pay for importing torch and open_clip (~6 s on a small
machine) to run a 12-layer text transformer for a few milliseconds. Once the text tower of a model
has been exported and verified against torch (pixseek.models.text_export, on the first text query
of a process that has torch loaded anyway), its manifest under `<cache_dir>/text/` says where the
graph is and what the model is (identifier, dimension, tokenizer settings, fidelity). This module
reads that manifest and answers `embed_texts` with imports of numpy, onnxruntime, regex and ftfy
only.

Manifests are keyed by the model setting (name, pretrained tag) plus, for `local-dir:` models,
the size and mtime of the checkpoint files, so replacing the weights makes a new export instead of
reusing a stale one. Built-in architectures without a pretrained tag get fresh random weights on
every load and are never exported.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixseek.errors import Misconfigured

if TYPE_CHECKING:
    from pixseek.models.clip_tokenizer import ClipTokenizer

LOCAL_DIR = "local-dir:"
WEIGHT_FILES = (
    "open_clip_config.json",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)
MANIFEST_VERSION = 1
TEXT_PRECISIONS = ("fp32", "int8")
# Minimum cosine to torch fp32 over the probe queries before an export is used (fp32 must be
# exact up to float rounding; int8 gets the image tower's threshold, accel.FIDELITY_MIN_COSINE).
TEXT_MIN_COSINE = {"fp32": 0.9999, "int8": 0.99}


def model_key(model_name: str, pretrained: str) -> str | None:
    """What identifies these weights on disk; None when every load has new random weights."""
    schema = model_name.startswith((LOCAL_DIR, "hf-hub:"))  # open_clip ignores the tag then
    parts: list[Any] = [model_name, "" if schema else pretrained]
    if model_name.startswith(LOCAL_DIR):
        folder = Path(model_name[len(LOCAL_DIR) :]).expanduser()
        for name in WEIGHT_FILES:
            try:
                stat = (folder / name).stat()
            except OSError:
                continue
            parts.append([name, stat.st_size, stat.st_mtime_ns])
    elif not model_name.startswith("hf-hub:") and not pretrained:
        return None
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def manifest_path(
    cache_dir: Path, model_name: str, pretrained: str, precision: str = "fp32"
) -> Path | None:
    key = model_key(model_name, pretrained)
    return None if key is None else cache_dir / "text" / f"{key}-{precision}.json"


@dataclass(frozen=True)
class Manifest:
    identifier: str  # the embedder's identifier, as stored in collection metadata
    dim: int
    fingerprint: str  # hash of the text tower's weights
    precision: str
    graph: str  # path of the .onnx file, relative to the cache directory
    context_length: int
    clean: str  # open_clip tokenizer clean mode
    pool: str  # "argmax" (end token = highest id) or "eos"
    eos_id: int
    trusted: bool
    min_cosine: float
    probes: int

    def to_json(self) -> dict[str, Any]:
        return {"version": MANIFEST_VERSION, **self.__dict__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError("manifest version")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def read_manifest(path: Path) -> Manifest | None:
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class OnnxTextTower:
    """`embed_texts(texts) -> (N, D)` unit float32 vectors, from the exported graph."""

    def __init__(self, manifest: Manifest, graph: Path, threads: int = 0) -> None:
        self.manifest = manifest
        self.identifier = manifest.identifier
        self.dim = manifest.dim
        self.precision = manifest.precision
        # What the query-embedding cache is keyed by: these weights through this graph.
        self.cache_tag = f"{manifest.fingerprint}-onnx-{manifest.precision}"
        self.graph, self.threads = graph, threads
        self._session: Any = None
        self._tokenizer: ClipTokenizer | None = None
        self._lock = threading.Lock()

    def prepare(self, prepack: bool = True) -> None:
        """Read the graph and the vocabulary now (~0.25 s for ViT-B-32) rather than on first use;
        a query answered from the on-disk cache needs neither. `prepack=False` skips ONNX
        Runtime's repacking of the weights for its matrix kernels: the session opens in about a
        third of the time and each pass is slower (0.08 vs 0.05 s for one ViT-B-32 query here),
        which pays for a process that answers one query."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort

            from pixseek.models.clip_tokenizer import shared_tokenizer

            self._tokenizer = shared_tokenizer(self.manifest.context_length, self.manifest.clean)
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if self.threads:
                options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            if not prepack:
                options.add_session_config_entry("session.disable_prepacking", "1")
            try:
                self._session = ort.InferenceSession(
                    str(self.graph), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own exception types
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise Misconfigured(
                    f"ONNX Runtime cannot load the text tower {self.graph}: {reason[:200]}; "
                    "delete it to re-export, or set PIXSEEK_TEXT_BACKEND=torch"
                ) from None

    @property
    def tokenizer(self) -> ClipTokenizer:
        self.prepare()
        assert self._tokenizer is not None
        return self._tokenizer

    @property
    def session(self) -> Any:
        self.prepare()
        return self._session

    def ends(self, tokens: np.ndarray) -> np.ndarray:
        """Index of each row's end token (the pooled position), as open_clip finds it."""
        if self.manifest.pool == "eos":
            return (tokens == self.manifest.eos_id).argmax(axis=1).astype(np.int64)
        return tokens.argmax(axis=1).astype(np.int64)

    def embed_tokens(self, tokens: np.ndarray) -> np.ndarray:
        ends = self.ends(tokens)
        # The causal mask keeps the pooled end position from seeing later tokens: cut the padding.
        tokens = np.ascontiguousarray(tokens[:, : int(ends.max()) + 1])
        (features,) = self.session.run(None, {"tokens": tokens, "ends": ends})
        features = np.asarray(features, dtype=np.float32)
        norms = np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        return (features / norms).astype(np.float32, copy=False)

    def embed_texts(self, texts: list[str] | tuple[str, ...]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_tokens(self.tokenizer(list(texts)))


_towers: dict[tuple[str, int], OnnxTextTower] = {}
_towers_lock = threading.Lock()


def load_text_tower(
    model_name: str, pretrained: str, cache_dir: Path, precision: str = "fp32", threads: int = 0
) -> OnnxTextTower | None:
    """The verified exported text tower of this model, or None when there is none (yet)."""
    if precision not in TEXT_PRECISIONS:
        raise Misconfigured(
            f"unknown text precision {precision!r}; use one of {', '.join(TEXT_PRECISIONS)} "
            "(PIXSEEK_TEXT_PRECISION)"
        )
    path = manifest_path(cache_dir, model_name, pretrained, precision)
    manifest = None if path is None else read_manifest(path)
    if manifest is None or not manifest.trusted:
        return None
    graph = cache_dir / manifest.graph
    if not graph.is_file():
        return None
    key = (str(graph), threads)
    with _towers_lock:
        if key not in _towers:
            _towers[key] = OnnxTextTower(manifest, graph, threads)
        return _towers[key]
