"""The near-duplicate benchmark set: real images x transformations, with hard negatives.

Originals come from ../shared/datasets (imagenette: several images per class, so other images of
the same class are the hard negatives; coco_mini: street and indoor scenes). Each original gets a
folder `fNNNN/` holding `orig.<ext>` (the file's own bytes) and one file per transformation.
`manifest.json` lists every file with its family, transformation and class.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
# The set the targets are stated on: re-encode, resize, crops up to 5%.
TARGET = (
    "jpeg_q20",
    "jpeg_q50",
    "jpeg_q90",
    "resize_25",
    "resize_50",
    "resize_200",
    "crop_2",
    "crop_5",
    "format_png",
    "format_webp",
    "exif_rotated",
)


def _jpeg(image: Image.Image, quality: int, **kwargs) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality, **kwargs)
    return out.getvalue()


def _save(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format=fmt, **({"quality": 85} if fmt == "WEBP" else {}))
    return out.getvalue()


def _resize(image: Image.Image, percent: int) -> Image.Image:
    w, h = image.size
    size = (max(8, round(w * percent / 100)), max(8, round(h * percent / 100)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _crop(image: Image.Image, percent: int, rng: random.Random) -> Image.Image:
    """Remove `percent` of the width and of the height, split at random between the sides."""
    w, h = image.size
    cut_w, cut_h = round(w * percent / 100), round(h * percent / 100)
    left, top = rng.randint(0, cut_w), rng.randint(0, cut_h)
    return image.crop((left, top, w - (cut_w - left), h - (cut_h - top)))


def _watermark(image: Image.Image) -> Image.Image:
    marked = image.convert("RGB").copy()
    draw = ImageDraw.Draw(marked)
    size = max(10, image.size[1] // 14)
    font = ImageFont.truetype(str(FONT), size) if FONT.is_file() else ImageFont.load_default()
    draw.text(
        (size // 2, image.size[1] - 2 * size),
        "(c) pixseek 2026",
        fill=(255, 255, 255),
        font=font,
        stroke_width=1,
        stroke_fill=(0, 0, 0),
    )
    return marked


def _exif_rotated(image: Image.Image) -> bytes:
    """Pixels stored rotated, with an EXIF orientation tag that makes a viewer show the original."""
    stored = image.convert("RGB").transpose(Image.Transpose.ROTATE_90)  # 6 = rotate 270 to show
    exif = Image.Exif()
    exif[0x0112] = 6
    return _jpeg(stored, 90, exif=exif.tobytes())


def transformations(rng: random.Random) -> dict[str, Callable[[Image.Image], bytes]]:
    def enhance(kind, factor: float) -> Callable[[Image.Image], bytes]:
        return lambda im: _jpeg(kind(im.convert("RGB")).enhance(factor), 90)

    return {
        "jpeg_q20": lambda im: _jpeg(im, 20),
        "jpeg_q50": lambda im: _jpeg(im, 50),
        "jpeg_q90": lambda im: _jpeg(im, 90),
        "resize_25": lambda im: _jpeg(_resize(im, 25), 90),
        "resize_50": lambda im: _jpeg(_resize(im, 50), 90),
        "resize_200": lambda im: _jpeg(_resize(im, 200), 90),
        "crop_2": lambda im: _jpeg(_crop(im, 2, rng), 90),
        "crop_5": lambda im: _jpeg(_crop(im, 5, rng), 90),
        "crop_10": lambda im: _jpeg(_crop(im, 10, rng), 90),
        "bright_+20": enhance(ImageEnhance.Brightness, 1.2),
        "bright_-20": enhance(ImageEnhance.Brightness, 0.8),
        "contrast_+20": enhance(ImageEnhance.Contrast, 1.2),
        "contrast_-20": enhance(ImageEnhance.Contrast, 0.8),
        "rotate_2": lambda im: _jpeg(im.convert("RGB").rotate(2, Image.Resampling.BICUBIC), 90),
        "rotate_5": lambda im: _jpeg(im.convert("RGB").rotate(5, Image.Resampling.BICUBIC), 90),
        "watermark": lambda im: _jpeg(_watermark(im), 90),
        "format_png": lambda im: _save(im, "PNG"),
        "format_webp": lambda im: _save(im, "WEBP"),
        "exif_rotated": _exif_rotated,
    }


def originals(per_class: int, coco: int, seed: int) -> list[tuple[Path, str]]:
    """(path, class) pairs: `per_class` imagenette images of each class plus `coco` COCO images."""
    rng = random.Random(seed)
    by_class: dict[str, list[Path]] = {}
    with open(DATASETS / "imagenette" / "labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            by_class.setdefault(row["label"], []).append(DATASETS / "imagenette" / row["filename"])
    chosen = [
        (path, label)
        for label, paths in sorted(by_class.items())
        for path in rng.sample(sorted(paths), per_class)
    ]
    coco_paths = sorted((DATASETS / "coco_mini").glob("*/*.jpg"))
    chosen += [(path, "coco") for path in rng.sample(coco_paths, coco)]
    return chosen


def build(out: Path, per_class: int = 15, coco: int = 100, seed: int = 0) -> list[dict]:
    """Write the set under `out` (skipped when its manifest exists) and return the manifest."""
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        return json.loads(manifest_path.read_text())
    rng = random.Random(seed)
    transforms = transformations(rng)
    manifest: list[dict] = []
    for family, (path, label) in enumerate(originals(per_class, coco, seed)):
        folder = out / f"f{family:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        original = folder / f"orig{path.suffix.lower()}"
        original.write_bytes(path.read_bytes())
        manifest.append(
            {
                "file": str(original.relative_to(out)),
                "family": family,
                "transform": "orig",
                "class": label,
            }
        )
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        for name, transform in transforms.items():
            data = transform(image)
            ext = {"format_png": ".png", "format_webp": ".webp"}.get(name, ".jpg")
            target = folder / f"{name}{ext}"
            target.write_bytes(data)
            manifest.append(
                {
                    "file": str(target.relative_to(out)),
                    "family": family,
                    "transform": name,
                    "class": label,
                }
            )
    manifest_path.write_text(json.dumps(manifest))
    return manifest
