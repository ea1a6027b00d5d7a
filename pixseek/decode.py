"""Decode image bytes safely into an RGB picture plus the metadata that goes into the payload."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# A truncated file is an error, not a half-grey picture in the index.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# The pixel limit is exactly the caller's `max_pixels` (PIXSEEK_MAX_IMAGE_PIXELS), checked below
# before any pixel is decoded; Pillow's own bomb guard (a warning from 89 MP, an error from 179 MP)
# would refuse images that the setting allows.
Image.MAX_IMAGE_PIXELS = None

EXIF_DATETIME_ORIGINAL = 36867
EXIF_DATETIME = 306
EXIF_MAKE = 271
EXIF_MODEL = 272
EXIF_IFD = 0x8769


class ImageRejected(Exception):
    """The bytes are not an image we can index; the message says why."""


@dataclass
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied, possibly reduced for the model
    width: int  # original, oriented size
    height: int
    format: str
    exif: dict[str, Any]


def decode_image(data: bytes, max_pixels: int, model_size: int = 0) -> DecodedImage:
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"image is {width}x{height} pixels, above the limit of {max_pixels}; "
                    "raise PIXSEEK_MAX_IMAGE_PIXELS to index it"
                )
            fmt = image.format or "unknown"
            if model_size and fmt == "JPEG":
                # JPEG can decode at 1/2, 1/4, 1/8 scale for free; keep >= 2x the model's input.
                image.draft("RGB", (model_size * 2, model_size * 2))
            image.seek(0)  # first frame of animated GIF/WebP/TIFF
            # Decode everything before reading EXIF: PNG's getexif() loads the pixels itself,
            # and a decode error swallowed there left a half-decoded picture "loaded".
            image.load()
            exif = _exif_fields(image)
            orientation = image.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("decompression bomb (too many pixels for its size); skipped") from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image file (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"cannot decode image: {exc}") from None
    return DecodedImage(image=rgb, width=width, height=height, format=fmt, exif=exif)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as a viewer shows them, not black.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


def _exif_fields(image: Image.Image) -> dict[str, Any]:
    try:
        exif = image.getexif()
        sub = exif.get_ifd(EXIF_IFD)
    except Exception:  # corrupt EXIF must not cost us the picture
        return {}
    fields: dict[str, Any] = {}
    taken = _exif_datetime(sub.get(EXIF_DATETIME_ORIGINAL) or exif.get(EXIF_DATETIME))
    if taken:
        fields["taken"] = taken
    camera = " ".join(
        str(part).strip("\x00 ").strip()
        for part in (exif.get(EXIF_MAKE), exif.get(EXIF_MODEL))
        if part and str(part).strip("\x00 ").strip()
    )
    if camera:
        fields["camera"] = camera
    return fields


def _exif_datetime(value: Any) -> str | None:
    """EXIF 'YYYY:MM:DD HH:MM:SS' -> RFC 3339 (no zone in EXIF; recorded as UTC)."""
    if not value:
        return None
    text = str(value).strip("\x00 ").strip()
    try:
        date, clock = text.split(" ", 1)
        year, month, day = (int(x) for x in date.split(":"))
        hour, minute, second = (int(float(x)) for x in clock.split(":")[:3])
        if not (1800 < year < 2200 and 1 <= month <= 12 and 1 <= day <= 31):
            return None
    except ValueError:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
