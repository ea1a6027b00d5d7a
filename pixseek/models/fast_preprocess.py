"""open_clip's image transform with the tensor steps done in numpy: same numbers, less CPU.

open_clip's transform is PIL steps (resize, crop, convert) followed by ToTensor + Normalize. Those
last two are small torch ops that torch spreads over its OpenMP pool. Run from ingest's decode
threads next to the model's own threads on a busy 2-core machine, that pool's spin-waiting cost
up to ~19 ms of CPU per 224x224 image (0.4-0.7 ms when the machine is idle); the numpy version
takes ~0.15 ms, single-threaded, whatever the load (bench/results/accel.md). It does the same
float32 arithmetic (uint8 -> float32, / 255, - mean, / std) in the same order, so the tensors are
identical (tests/test_accel.py checks bit equality). Transforms of any other shape, and images
that are not 8-bit RGB after the PIL steps, go through the original transform.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

TENSOR_STEPS = ("ToTensor", "MaybeToTensor")


class FastPreprocess:
    """Callable PIL image -> (3, H, W) float32 tensor, equal to `transform(image)`."""

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform
        steps: list[Any] = list(getattr(transform, "transforms", []))
        names = [type(step).__name__ for step in steps]
        self.enabled = len(steps) >= 2 and names[-2] in TENSOR_STEPS and names[-1] == "Normalize"
        self.pil_steps = steps[:-2] if self.enabled else []
        if self.enabled:
            normalize = steps[-1]
            self.mean = np.asarray(normalize.mean, dtype=np.float32).reshape(-1, 1, 1)
            self.std = np.asarray(normalize.std, dtype=np.float32).reshape(-1, 1, 1)
            self.enabled = self.mean.shape[0] == 3 and self.std.shape[0] == 3
        # Attribute access (e.g. `.transforms`) keeps working as on the original Compose.
        self.transforms = steps

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not self.enabled or not isinstance(image, Image.Image):
            return self.transform(image)
        for step in self.pil_steps:
            image = step(image)
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            return self.transform.transforms[-1](self.transform.transforms[-2](image))
        rgb = np.asarray(image)  # (H, W, 3) uint8
        # Channels first before the arithmetic: numpy's inner loops then run along image rows,
        # not over 3-element pixels (several times faster); uint8 -> float32 is exact.
        pixels = np.empty((3, *rgb.shape[:2]), dtype=np.float32)
        np.copyto(pixels, rgb.transpose(2, 0, 1), casting="unsafe")
        pixels /= np.float32(255.0)
        pixels -= self.mean
        pixels /= self.std
        return torch.from_numpy(pixels)

    def __repr__(self) -> str:
        return f"FastPreprocess({self.transform!r})"
