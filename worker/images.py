"""Generated images on disk, keyed by everything that determines them.

Key = sha256 of (model fingerprint, prompt, negative prompt, seed, steps, width, height, guidance).
One PNG per image (so a job asking for 4 images reuses the 2 an earlier job made with the same
seeds), plus a JSON sidecar with the parameters, under `<data_dir>/cache/generated/ab/<key>.png`.
Files are written to a temp name and renamed, so a worker killed mid-write leaves no half image,
and two workers writing the same key both end with a whole one. The files are kept: job results
point at them so people can see what the model imagined.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image

from pixseek.models.generation import GenerationParams

CACHE_VERSION = 1


class ImageCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def key(model: str, params: GenerationParams, seed: int) -> str:
        fields = {"v": CACHE_VERSION, "model": model, "seed": int(seed), **asdict(params)}
        fields["guidance"] = round(float(fields["guidance"]), 6)
        canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.png"

    def get(self, key: str) -> Path | None:
        path = self.path(key)
        return path if path.is_file() else None

    def load(self, key: str) -> Image.Image | None:
        """The cached image, or None when missing or unreadable (it is then made again)."""
        path = self.get(key)
        if path is None:
            return None
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError):
            return None

    def meta(self, key: str) -> dict[str, Any]:
        """The sidecar written with the image ({} when missing or unreadable)."""
        try:
            return json.loads(self.path(key).with_suffix(".json").read_text())
        except (OSError, ValueError):
            return {}

    def put(self, key: str, image: Image.Image, meta: dict[str, Any]) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2).encode("utf-8"))
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
        try:
            with os.fdopen(handle, "wb") as out:
                image.save(out, format="PNG")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _atomic_write(path: Path, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
