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

import re
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
    """Thread-safe: each calling thread gets its own RapidOCR instance (sessions are not shared).

    RapidOCR's models, run by this class's own steps rather than `RapidOCR.__call__`, because
    three of its defaults lose words on photos (bench/results/ocr.md):
    - detection runs twice, at the image's scale and at UPSCALE x (when that stays within
      `max_side`): PP-OCRv4's detector misses or clips (first/last letters) much of the 20-80 px
      text at 1x that it finds whole at 1.5x, and the other way round; overlapping lines from
      the two passes keep the read with the most confident characters;
    - CTC decoding inserts a space where the recogniser's space class has SPACE_PROB between
      two letters although a blank wins the column (its argmax decoding glues words together:
      "milltavern");
    - a line the angle classifier would turn upside down is read both ways and keeps the more
      confident reading (the classifier turns upright 80 px words over: "zinc" -> "ouz").
    """

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
            engine = RapidOCR(
                # The global thread counts: RapidOCR copies them over the det_/cls_/rec_ ones,
                # so per-model counts alone leave every session on all cores.
                intra_op_num_threads=self.threads,
                inter_op_num_threads=1,
                # Detect at the given scale (the default upscales the short side to 736 px).
                det_limit_type="max",
                det_limit_side_len=max(self.max_side, round(self.max_side * UPSCALE)),
                det_unclip_ratio=2.0,  # looser boxes: fewer clipped first/last letters
                text_score=self.min_confidence,
            )
            missing = [
                name for name in ("text_det", "text_cls", "text_rec") if not hasattr(engine, name)
            ]
            if missing:
                raise OcrUnavailable(
                    "this rapidocr-onnxruntime has no " + ", ".join(missing) + "; install 1.4 "
                    "with `pip install 'rapidocr-onnxruntime>=1.4,<1.5'`"
                )
            self._local.engine = engine
        return engine

    def read(self, image: Image.Image) -> OcrResult:
        """OCR one image; never raises for a bad image (the error is in the result)."""
        started = time.perf_counter()
        try:
            small, scale = bounded(image, self.max_side)
            found = self._read_bgr(np.ascontiguousarray(np.asarray(small)[:, :, ::-1]))
        except OcrUnavailable:
            raise
        except Exception as exc:  # a model failure on one image must not stop a run
            return OcrResult([], time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        lines = []
        for box, text, score in found:
            text = text.strip()
            if not text or score < self.min_confidence:
                continue
            corners = [[round(float(x) / scale), round(float(y) / scale)] for x, y in box]
            lines.append(OcrLine(text, corners, score))
        lines.sort(key=lambda ln: (min(y for _, y in ln.box), min(x for x, _ in ln.box)))
        return OcrResult(lines, time.perf_counter() - started)

    def _detect(self, engine: Any, bgr: np.ndarray) -> list[np.ndarray]:
        """Line boxes (4 corners, float32, in `bgr`'s pixels) from each detection scale."""
        boxes: list[np.ndarray] = []
        longest = max(bgr.shape[:2])
        for factor in (1.0, UPSCALE):
            if factor != 1.0 and longest * factor > self.max_side:
                continue  # a large image: its small text is already at a readable scale
            scaled = bgr if factor == 1.0 else _resize(bgr, factor)
            found, _ = engine.text_det(scaled)
            if found is not None:
                boxes += [np.asarray(box, dtype=np.float32) / factor for box in found]
        return boxes

    def _read_bgr(self, bgr: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
        engine = self._engine()
        boxes = self._detect(engine, bgr)
        if not boxes:
            return []
        crops = engine.get_crop_img_list(bgr, [box.copy() for box in boxes])
        turned, classes, _ = engine.text_cls(crops)
        reads = _recognise(engine, turned)
        threshold = engine.text_cls.cls_thresh
        flipped = [i for i, (label, p) in enumerate(classes) if "180" in label and p > threshold]
        if flipped:  # read the classifier's upside-down lines as they were too
            for i, read in zip(
                flipped, _recognise(engine, [crops[i] for i in flipped]), strict=True
            ):
                if read[1] * len(read[0]) > reads[i][1] * len(reads[i][0]):
                    reads[i] = read
        return _best_of_overlaps(
            [(box, text, score) for box, (text, score) in zip(boxes, reads, strict=True) if text]
        )


UPSCALE = 1.5  # the second detection pass (see RapidOcrEngine)
SPACE_PROB = 0.2  # a space between two letters when the space class reaches this


def _resize(bgr: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    return cv2.resize(bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)


def _recognise(engine: Any, crops: list[np.ndarray]) -> list[tuple[str, float]]:
    """Text and mean character confidence of each crop, decoded with `_decode`, batched as
    RapidOCR does (similar widths together)."""
    rec = engine.text_rec
    characters = rec.postprocess_op.character
    space = characters.index(" ") if " " in characters else -1
    _, height, width = rec.rec_image_shape[:3]
    order = np.argsort([crop.shape[1] / max(1, crop.shape[0]) for crop in crops])
    out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    for start in range(0, len(order), rec.rec_batch_num):
        chunk = order[start : start + rec.rec_batch_num]
        ratio = max(
            [width / height] + [crops[i].shape[1] / max(1, crops[i].shape[0]) for i in chunk]
        )
        batch = np.stack([rec.resize_norm_img(crops[i], ratio) for i in chunk]).astype(np.float32)
        probs = rec.session(batch)[0]
        for i, row in zip(chunk, probs, strict=True):
            out[i] = _decode(row, characters, space)
    return out


def _decode(probs: np.ndarray, characters: list[str], space: int) -> tuple[str, float]:
    """Greedy CTC decoding, plus a space wherever the space class reaches SPACE_PROB in the
    blank columns between two letters."""
    best = probs.argmax(axis=1)
    text: list[str] = []
    confidences: list[float] = []
    last, last_column = 0, -1
    for column, index in enumerate(best):
        if index != 0 and index != last:
            if (
                space >= 0
                and text
                and text[-1] != " "
                and index != space
                and column - last_column > 1
                and probs[last_column + 1 : column, space].max() >= SPACE_PROB
            ):
                text.append(" ")
            text.append(characters[index])
            confidences.append(float(probs[column, index]))
            last_column = column
        last = index
    if not confidences:
        return "", 0.0
    return "".join(text), float(np.mean(confidences))


def _best_of_overlaps(
    reads: list[tuple[np.ndarray, str, float]],
) -> list[tuple[np.ndarray, str, float]]:
    """The reads of both scales, most confident characters (letters x confidence) first, less
    those that add nothing: a read whose box overlaps a kept one by more than half the smaller
    box and whose words all occur in that kept read (the same line found twice, or a piece of
    it); where the two have the same letters, the one split into more words stays. Different
    readings of one place are all kept: the keyword index finds either."""
    kept: list[list[Any]] = []  # [box, text, score, span]
    for box, text, score in sorted(reads, key=lambda r: -len(r[1].replace(" ", "")) * r[2]):
        x0, y0 = box.min(axis=0)
        x1, y1 = box.max(axis=0)
        area = max(1e-6, (x1 - x0) * (y1 - y0))
        words = _WORD.findall(text.lower())
        for entry in kept:
            a0, b0, a1, b1 = entry[3]
            w = min(x1, a1) - max(x0, a0)
            h = min(y1, b1) - max(y0, b0)
            overlap = w > 0 and h > 0 and w * h > 0.5 * min(area, (a1 - a0) * (b1 - b0))
            other = entry[1].lower()
            if overlap and all(word in other for word in words):
                other_words = _WORD.findall(other)
                if "".join(words) == "".join(other_words) and len(words) > len(other_words):
                    entry[1] = text  # "harbour gate" read at one scale, "harbourgate" at the other
                break
        else:
            kept.append([box, text, score, (float(x0), float(y0), float(x1), float(y1))])
    return [(box, text, score) for box, text, score, _ in kept]


_WORD = re.compile(r"[^\W_]+")


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
