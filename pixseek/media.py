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
# Between an archive's name and a member's in `source` (`sub/set.tar:inner/a.jpg`).
MEMBER_SEPARATOR = ":"


def is_zip(path: Path) -> bool:
    return path.name.lower().endswith(".zip")


def is_tar(path: Path) -> bool:
    return path.name.lower().endswith(TAR_SUFFIXES)


def is_archive(path: Path) -> bool:
    return is_zip(path) or is_tar(path)


def split_members(source: str) -> list[str]:
    """`sub/set.tar:inner.zip:a.jpg` -> [`sub/set.tar`, `inner.zip`, `a.jpg`]: a separator counts
    only after a name with an archive suffix, so other colons stay part of the name."""
    parts: list[str] = []
    start = 0
    for index, char in enumerate(source):
        if char == MEMBER_SEPARATOR and is_archive(Path(source[start:index])):
            parts.append(source[start:index])
            start = index + 1
    parts.append(source[start:])
    return parts


def _read_member(name: str, container: Path | io.BytesIO, member: str) -> bytes:
    """One member of the zip or tar called `name`, given by its path on disk or its bytes."""
    if is_zip(Path(name)):
        with zipfile.ZipFile(container) as z:
            return z.read(member)
    where: dict[str, Any] = (
        {"name": container} if isinstance(container, Path) else {"fileobj": container}
    )
    with tarfile.open(mode="r:*", **where) as archive:
        handle = archive.extractfile(member)
        if handle is None:
            raise KeyError(member)
        return handle.read()


def read_image_bytes(payload: dict[str, Any]) -> bytes | None:
    """The image's bytes from its folder or archive (archives inside folders and archives
    included); None when it is gone or unreadable."""
    root, source = payload.get("root"), payload.get("source")
    if not root or not source:
        return None
    root_path = Path(str(root))
    parts = split_members(str(source))
    try:
        if root_path.is_dir():
            if len(parts) == 1:
                return (root_path / parts[0]).read_bytes()
            archive_path, parts = root_path / parts[0], parts[1:]
        elif is_archive(root_path):
            archive_path = root_path
        else:
            return None
        data = _read_member(archive_path.name, archive_path, parts[0])
        container = parts[0]
        for member in parts[1:]:
            data = _read_member(container, io.BytesIO(data), member)
            container = member
        return data
    except (OSError, KeyError, zipfile.BadZipFile, tarfile.TarError, EOFError):
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
