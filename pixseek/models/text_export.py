"""Export the CLIP text tower of a loaded model to ONNX, verify it against torch, record it.

The graph takes `tokens` (N, L) int64, already cut after the longest end token, and `ends` (N,)
int64, each row's pooled position, and returns the unnormalised features (N, D). Both axes are
dynamic, so one graph serves any batch of queries. It is written by onnx_backend.cached_graph
(same cache layout, atomic rename, int8 by ONNX Runtime's dynamic quantisation) and then checked
before use: the numpy tokenizer must give open_clip's ids and the ONNX features must match torch
fp32 (min cosine >= text_tower.TEXT_MIN_COSINE) on PROBES. The verdict goes into the manifest that
pixseek.models.text_tower reads; an export that fails the check is recorded as untrusted and the
torch text path stays in use.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pixseek.errors import PixseekError, UserError
from pixseek.models import accel, onnx_backend
from pixseek.models.text_tower import (
    TEXT_MIN_COSINE,
    TEXT_PRECISIONS,
    Manifest,
    OnnxTextTower,
    manifest_path,
    read_manifest,
)

if TYPE_CHECKING:
    from pixseek.models.clip import ClipEmbedder

GRAPH_FILE = "text.onnx"
log = logging.getLogger("pixseek.text_export")

# Varied queries the export is verified on (tokenizer ids and embeddings): short, long, unicode,
# emoji, punctuation, templates, empty. tests/test_text_onnx.py uses a larger generated corpus.
PROBES = (
    "",
    "dog",
    "a photo of a dog.",
    "a red car parked next to a fire hydrant at night",
    "Ünïcödé café, naïve façade — ÇA VA?",
    "東京の夜景と桜",
    "🐶🚗 emoji ❤️ and 👨‍👩‍👧‍👦",
    "it's &amp; don't &lt;b&gt;",
    "C++ / #tags @user 3.14 1,000,000",
    "<start_of_text> special <end_of_text> tokens",
    "   \t spaced \n out  ",
    "a picture of " + "very " * 100 + "long query",
    "مرحبا بالعالم",
    "{} braces {0} and %s",
)

_fingerprints: dict[int, str] = {}
_export_lock = threading.Lock()


class TextModule(torch.nn.Module):
    """open_clip CLIP.encode_text on pre-trimmed tokens with given pooled positions."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.token_embedding = model.token_embedding
        self.positional_embedding = model.positional_embedding
        self.transformer = model.transformer
        self.ln_final = model.ln_final
        self.text_projection = model.text_projection
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)

    def forward(self, tokens: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.token_embedding(tokens)
        x = x + self.positional_embedding[:length]
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0]), ends]
        projection = self.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def supported(clip: ClipEmbedder) -> str | None:
    """Why this model's text path cannot be exported, or None when it can."""
    from open_clip import tokenizer as oc_tokenizer

    from pixseek.models.clip import _can_trim_text

    if not _can_trim_text(clip.model):
        return "not a causal open_clip CLIP text tower with argmax/eos pooling"
    tok = clip.tokenizer
    if type(tok) is not oc_tokenizer.SimpleTokenizer or tok.reduction_fn is not None:
        return f"tokenizer {type(tok).__name__} is not open_clip's plain SimpleTokenizer"
    if tok.vocab_size != 49408:
        return "tokenizer has extra special tokens"
    if _clean_mode(clip) is None:
        return "unknown tokenizer clean function"
    return None


def _clean_mode(clip: ClipEmbedder) -> str | None:
    from open_clip import tokenizer as oc_tokenizer

    modes = {
        oc_tokenizer._clean_lower: "lower",
        oc_tokenizer._clean_whitespace: "whitespace",
        oc_tokenizer._clean_canonicalize: "canonicalize",
    }
    return modes.get(clip.tokenizer.clean_fn)


def text_fingerprint(clip: ClipEmbedder) -> str:
    """A hash of the text tower's weights (cached per loaded model)."""
    key = id(clip.model)
    if key not in _fingerprints:
        _fingerprints[key] = "text-" + accel.weights_fingerprint(TextModule(clip.model))
    return _fingerprints[key]


def export_text_tower(
    clip: ClipEmbedder,
    model_name: str,
    pretrained: str,
    cache_dir: Path,
    precision: str = "fp32",
    threads: int = 0,
) -> OnnxTextTower | None:
    """Export (once), verify and record this model's text tower; the tower if it is trusted.

    None when the model cannot be exported (another tokenizer or architecture), has random
    weights on every load, or failed the fidelity check: callers keep the torch text path.
    """
    if precision not in TEXT_PRECISIONS:
        raise UserError(f"unknown text precision {precision!r}; use fp32 or int8")
    path = manifest_path(cache_dir, model_name, pretrained, precision)
    if path is None:
        return None
    reason = supported(clip)
    if reason is not None:
        log.info("text tower not exported: %s", reason)
        return None
    with _export_lock:
        manifest = read_manifest(path)
        if manifest is None:
            manifest = _export_and_verify(clip, cache_dir, precision)
            _write(path, manifest)
    if not manifest.trusted:
        return None
    return OnnxTextTower(manifest, cache_dir / manifest.graph, threads)


def _export_and_verify(clip: ClipEmbedder, cache_dir: Path, precision: str) -> Manifest:
    module = TextModule(clip.model)
    if clip.device.type != "cpu" or clip.dtype != torch.float32:
        module = copy.deepcopy(module).float().cpu()
    fingerprint = text_fingerprint(clip)
    context = int(clip.tokenizer.context_length)

    def export(target: Path) -> None:
        batch = torch.export.Dim("batch", min=1, max=65536)
        length = torch.export.Dim("length", min=1, max=context)
        tokens = torch.tensor(clip.tokenizer(["a photo of a probe.", "probe"]).numpy()[:, :8])
        ends = tokens.argmax(dim=-1)
        onnx_backend.export_graph(
            module,
            (tokens, ends),
            ({0: batch, 1: length}, {0: batch}),
            ["tokens", "ends"],
            ["features"],
            target,
            "text tower",
            "set PIXSEEK_TEXT_BACKEND=torch",
        )
        onnx_backend.externalize(target)  # opened by every text search: map, don't parse

    graph = onnx_backend.cached_graph(
        module,
        precision,
        torch.device("cpu"),
        cache_dir,
        lambda: fingerprint,
        graph_file=GRAPH_FILE,
        export=export,
    )
    model = clip.model
    eos_id = getattr(model, "text_eos_id", None)
    draft = Manifest(
        identifier=clip.identifier,
        dim=clip.dim,
        fingerprint=fingerprint,
        precision=precision,
        graph=os.path.relpath(graph, cache_dir),
        context_length=context,
        clean=_clean_mode(clip) or "lower",
        pool=model.text_pool_type,
        eos_id=int(eos_id if eos_id is not None else clip.tokenizer.eot_token_id),
        trusted=False,
        min_cosine=0.0,
        probes=len(PROBES),
    )
    tower = OnnxTextTower(draft, graph, clip.spec.threads)
    ours = tower.tokenizer(list(PROBES))
    theirs = clip.tokenizer(list(PROBES)).numpy()
    if not np.array_equal(ours, theirs):
        log.warning("text tower export not used: tokenizer ids differ from open_clip's")
        return draft
    low = min_cosine(clip.embed_texts(list(PROBES)), tower.embed_tokens(theirs))
    trusted = low >= TEXT_MIN_COSINE[precision]
    if not trusted:
        log.warning(
            "text tower export (%s) not used: min cosine %.6f to torch < %s",
            precision,
            low,
            TEXT_MIN_COSINE[precision],
        )
    return Manifest(**{**draft.__dict__, "trusted": trusted, "min_cosine": round(low, 7)})


def min_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    low, _ = accel.cosine_stats(reference, candidate)
    return low


def _write(path: Path, manifest: Manifest) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache only costs a re-export next time
        log.warning("cannot record the text tower export under %s: %s", path.parent, exc)


def try_export(
    clip: ClipEmbedder,
    model_name: str,
    pretrained: str,
    cache_dir: Path,
    precision: str = "fp32",
    threads: int = 0,
) -> OnnxTextTower | None:
    """export_text_tower that never fails a search: problems are logged, torch stays in use."""
    try:
        return export_text_tower(clip, model_name, pretrained, cache_dir, precision, threads)
    except PixseekError as exc:
        log.warning("%s; text queries keep using torch", exc)
        return None


def main(argv: list[str]) -> int:
    """`python -m pixseek.models.text_export MODEL PRETRAINED CACHE_DIR PRECISION THREADS`.

    Long-lived processes (API, worker) export in this child process: torch's exporter changes
    process-wide state (fake-tensor modes), so it must not run beside text queries on torch.
    """
    model_name, pretrained, cache_dir, precision, threads = argv
    from pixseek.models.clip import load_clip

    clip = load_clip(model_name, pretrained, "cpu")
    tower = try_export(clip, model_name, pretrained, Path(cache_dir), precision, int(threads))
    return 0 if tower is not None else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
