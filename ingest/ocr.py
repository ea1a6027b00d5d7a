"""Text in images: RapidOCR (PP-OCRv4 detection + recognition on ONNX Runtime, models in the wheel).

Chosen over Tesseract on bench/results/ocr.md (word recall, precision and ms per image on photos
with rendered text). The recognition model reads Latin letters, digits and punctuation and
Chinese; other scripts (Cyrillic, Greek, Arabic, Devanagari...) come out wrong or empty, and
accents are mostly dropped. Every image is downscaled so its longer side is at most `max_side`
before detection (huge images cost the same as large ones); text smaller than about 10 px at
that scale is not found. One engine per thread, each ONNX session with its own thread count,
so OCR runs beside the CLIP model without competing for the same pool.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

ENGINE_ID = "rapidocr-ppocrv4"
DEFAULT_MAX_SIDE = 1600
DEFAULT_MIN_CONFIDENCE = 0.5
# The payload keys OCR writes: `ocr_engine` marks a point as done (even with no text found).
OCR_FIELD = "ocr"
OCR_LINES_FIELD = "ocr_lines"
OCR_ENGINE_FIELD = "ocr_engine"


class OcrUnavailable(RuntimeError):
    """The OCR package is missing or its models cannot load."""


@dataclass
class OcrLine:
    text: str
    box: list[list[int]]  # four corners (x, y) in the image as stored (EXIF orientation applied)
    confidence: float


@dataclass
class OcrResult:
    lines: list[OcrLine] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # OCR failed on this image; the point is still marked done

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def payload(self) -> dict[str, Any]:
        return {
            OCR_FIELD: self.text,
            OCR_LINES_FIELD: [
                {"text": ln.text, "box": ln.box, "confidence": round(ln.confidence, 4)}
                for ln in self.lines
            ],
            OCR_ENGINE_FIELD: ENGINE_ID if self.error is None else f"{ENGINE_ID}:failed",
        }


def bounded(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """The image in RGB with its longer side at most `max_side`, and the scale applied."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    longest = max(image.size)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS), scale


class RapidOcrEngine:
    """Thread-safe: each calling thread gets its own RapidOCR instance (sessions are not shared)."""

    identifier = ENGINE_ID

    def __init__(
        self,
        threads: int = 1,
        max_side: int = DEFAULT_MAX_SIDE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self.threads = max(1, threads)
        self.max_side = max_side
        self.min_confidence = min_confidence
        self._local = threading.local()
        self._engine()  # fail now, with one line, rather than on the first image

    def _engine(self) -> Any:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError:
                raise OcrUnavailable(
                    "OCR needs rapidocr-onnxruntime; install it with "
                    "`pip install rapidocr-onnxruntime`"
                ) from None
            n = self.threads
            engine = RapidOCR(
                det_intra_op_num_threads=n,
                cls_intra_op_num_threads=n,
                rec_intra_op_num_threads=n,
                det_inter_op_num_threads=1,
                cls_inter_op_num_threads=1,
                rec_inter_op_num_threads=1,
                # Detect at the image's own scale up to max_side (the default upscales the
                # short side to 736 px: 3x slower here for no gain at >= 12 px text).
                det_limit_type="max",
                det_limit_side_len=self.max_side,
                det_unclip_ratio=2.0,  # looser boxes: fewer clipped first/last letters
                text_score=self.min_confidence,
            )
            self._local.engine = engine
        return engine

    def read(self, image: Image.Image) -> OcrResult:
        """OCR one image; never raises for a bad image (the error is in the result)."""
        started = time.perf_counter()
        try:
            small, scale = bounded(image, self.max_side)
            raw, _ = self._engine()(np.asarray(small)[:, :, ::-1])  # RapidOCR wants BGR
        except OcrUnavailable:
            raise
        except Exception as exc:  # a model failure on one image must not stop a run
            return OcrResult([], time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        lines = []
        for box, text, score in raw or []:
            text = str(text).strip()
            if not text or float(score) < self.min_confidence:
                continue
            corners = [[round(x / scale), round(y / scale)] for x, y in box]
            lines.append(OcrLine(text, corners, float(score)))
        lines.sort(key=lambda ln: (min(y for _, y in ln.box), min(x for x, _ in ln.box)))
        return OcrResult(lines, time.perf_counter() - started)


_engines: dict[tuple[int, int, float], RapidOcrEngine] = {}
_engines_lock = threading.Lock()


def ocr_engine(
    threads: int = 1,
    max_side: int = DEFAULT_MAX_SIDE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> RapidOcrEngine:
    """One shared engine per configuration in this process."""
    key = (threads, max_side, min_confidence)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = RapidOcrEngine(threads, max_side, min_confidence)
        return _engines[key]
