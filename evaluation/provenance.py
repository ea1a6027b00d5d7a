"""What an evaluation run used, recorded in metrics.json: exactly the settings in effect.

Model weights are identified by content where they are local files (SHA-256 of the weight files)
and by Hub revision where they come from the Hugging Face cache, so two runs with "the same model
name" but different weights can be told apart. Generation settings appear only when a generative
strategy ran; `alpha` only with `weighted`, the RRF constant only with `rrf`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pixseek.search.fusion import RRF_K

from pixseek import __version__
from pixseek.config import Settings
from pixseek.models.t2i import is_local_model
from pixseek.store.base import DINO_VECTOR, CollectionInfo

CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_digests: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for the rest of the process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def _files_digest(files: Sequence[Path], root: Path) -> str | None:
    if not files:
        return None
    combined = hashlib.sha256()
    for file in sorted(files):
        combined.update(f"{file.relative_to(root).as_posix()}:{file_sha256(file)}\n".encode())
    return "sha256:" + combined.hexdigest()


def _hub_revision(repo: str, filename: str) -> str | None:
    """The cached snapshot (commit) of a Hub repo, without touching the network."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, filename)
    except Exception:  # noqa: BLE001 - provenance is best effort; the name is still recorded
        return None
    if not isinstance(found, str):
        return None
    return f"hf:{repo}@{Path(found).parent.name}"


def clip_weights(model: str, pretrained: str) -> str | None:
    if model.startswith("local-dir:"):
        root = Path(model.removeprefix("local-dir:")).expanduser()
        return _files_digest([root / f for f in CLIP_WEIGHT_FILES if (root / f).is_file()], root)
    if model.startswith("hf-hub:"):
        return _hub_revision(model.removeprefix("hf-hub:"), "open_clip_config.json")
    try:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
    except Exception:  # noqa: BLE001
        return None
    repo = str(cfg.get("hf_hub") or "").strip("/")
    return _hub_revision(repo, "open_clip_config.json") if repo else None


def t2i_weights(model: str) -> str | None:
    if is_local_model(model):
        root = Path(model).expanduser()
        files = [*root.glob("*/*.safetensors"), *root.glob("*/*.bin")]
        return _files_digest(files, root)
    return _hub_revision(model, "model_index.json")


def dino_weights(model: str) -> str | None:
    root = Path(model).expanduser()
    if root.is_dir():
        return _files_digest([*root.glob("*.safetensors"), *root.glob("*.bin")], root)
    return _hub_revision(model, "config.json")


def run_settings(
    settings: Settings,
    info: CollectionInfo,
    clip_identifier: str,
    strategies: Sequence[str],
    ks: Sequence[int],
    depth: int,
    count_missing: bool,
    ensemble: bool,
    ensembled_queries: int,
    generation: dict[str, Any] | None,
    queries: dict[str, Any],
) -> dict[str, Any]:
    """The settings block of metrics.json. `generation` is None for a text-only run."""
    out: dict[str, Any] = {
        "pixseek_version": __version__,
        "collection": {
            "name": info.name,
            "points": info.points,
            "models": (info.metadata or {}).get("models", {}),
        },
        "queries": queries,
        "clip": {
            "model": settings.clip_model,
            "pretrained": None if ":" in settings.clip_model else settings.clip_pretrained,
            "identifier": clip_identifier,
            "weights": clip_weights(settings.clip_model, settings.clip_pretrained),
            "device": settings.device,
        },
        "text": {
            "ensemble": ensemble,
            "queries_ensembled": ensembled_queries,
            "prompt_templates": list(settings.prompt_templates) if ensembled_queries else [],
        },
        "strategies": list(strategies),
        "ks": list(ks),
        "depth": depth,
        "relevant_missing_counted": count_missing,
    }
    if generation is not None:
        block = {
            "t2i_model": settings.t2i_model,
            "t2i_weights": t2i_weights(settings.t2i_model),
            **generation,
            "image_backend": settings.backend,
            "image_precision": settings.precision,
        }
        if settings.dino_model and DINO_VECTOR in info.vectors:  # fused in with the images
            block["dino_model"] = settings.dino_model
            block["dino_weights"] = dino_weights(settings.dino_model)
        if "weighted" not in strategies:
            block.pop("alpha", None)
        if "rrf" in strategies:
            block["rrf_k"] = RRF_K
        out["generation"] = block
    return out
