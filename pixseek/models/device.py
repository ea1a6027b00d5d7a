"""Device and precision choice shared by all models."""

from __future__ import annotations

import torch

from pixseek.errors import UserError


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device {requested!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device is set to cuda but no CUDA GPU is visible; set PIXSEEK_DEVICE=cpu")
    return device


def pick_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA (halves memory, tensor cores); fp32 on CPU where fp16 is slow."""
    return torch.float16 if device.type == "cuda" else torch.float32
