"""Reading stored images back: from the folder or tar/zip archive they were ingested from.

A point's payload records `root` (a folder or an archive) and `source` (the path inside it); the
search contact sheet, the evaluation report and the HTTP API all read images through here, and
never from a path that came with a request.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
THUMBNAIL_PX = 256


def is_zip(path: Path) -> bool:
    return path.name.lower().endswith(".zip")


def is_tar(path: Path) -> bool:
    return path.name.lower().endswith(TAR_SUFFIXES)


def is_archive(path: Path) -> bool:
    return is_zip(path) or is_tar(path)


def read_image_bytes(payload: dict[str, Any]) -> bytes | None:
    """The image's bytes from its folder or archive; None when it is gone or unreadable."""
    root, source = payload.get("root"), payload.get("source")
    if not root or not source:
        return None
    root_path = Path(str(root))
    try:
        if root_path.is_dir():
            return (root_path / str(source)).read_bytes()
        if is_zip(root_path):
            with zipfile.ZipFile(root_path) as archive:
                return archive.read(str(source))
        if is_tar(root_path):
            with tarfile.open(root_path, "r:*") as archive:
                handle = archive.extractfile(str(source))
                return handle.read() if handle is not None else None
    except (OSError, KeyError, zipfile.BadZipFile, tarfile.TarError, EOFError):
        return None
    return None


def thumbnail_jpeg(data: bytes, size: int = THUMBNAIL_PX) -> bytes | None:
    """A JPEG at most `size` px on its longer side (EXIF orientation applied); None if unreadable."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (size * 2, size * 2))
            picture = ImageOps.exif_transpose(image).convert("RGB")
            picture.thumbnail((size, size))
            out = io.BytesIO()
            picture.save(out, format="JPEG", quality=82)
    except Exception:  # a broken file must not cost the whole page
        return None
    return out.getvalue()
