"""What determines a generated image, as a torch-free record shared by jobs, cache and pipeline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationParams:
    """Everything that determines the images, except the seed and the model."""

    prompt: str
    negative_prompt: str = ""
    steps: int = 4
    guidance: float = 0.0
    width: int = 512
    height: int = 512
