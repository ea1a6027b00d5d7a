"""Discover candidate image files in directories, tar archives and zip archives.

Discovery reads only names, sizes and modification times (no image bytes), so an unchanged file
can be skipped without being opened. Bytes are read later, in order, through `ImageFile.read`.
Archives found inside a folder are walked too (members are `sub/set.tar:member`), and archives
inside archives down to MAX_ARCHIVE_DEPTH (`set.tar:inner.zip:member`; those are read into memory).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixseek.errors import UserError
from pixseek.media import MEMBER_SEPARATOR, is_archive, is_tar, is_zip

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"})
# A single member bigger than this is refused before reading (archives can lie about sizes).
MAX_FILE_BYTES = 512 * 1024 * 1024
# Archives are opened down to this depth (1 = an archive, 2 = an archive inside it, in memory).
MAX_ARCHIVE_DEPTH = 2


@dataclass(frozen=True)
class ImageFile:
    """One candidate image: where it lives and what discovery learnt without opening it."""

    root: str  # absolute directory or archive path the source is relative to
    source: str  # path relative to root, or the archive member name
    size: int
    mtime: float
    read: Callable[[], bytes]

    @property
    def key(self) -> tuple[str, str]:
        return (self.root, self.source)


@dataclass(frozen=True)
class Skipped:
    """A path discovery could not use, with the reason shown to the user."""

    source: str
    reason: str


def resolve_inputs(paths: list[str]) -> list[Path]:
    resolved = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise UserError(
                f"path {raw} does not exist; give a folder, an image, or a tar/zip file"
            )
        resolved.append(path.resolve())
    return resolved


def root_of(path: Path) -> str:
    """The `root` payload value for an input: the folder itself, an archive, or a file's folder."""
    if path.is_dir() or is_archive(path):
        return str(path)
    return str(path.parent)


def discover(path: Path) -> Iterator[ImageFile | Skipped]:
    if path.is_dir():
        yield from _walk_directory(path)
    elif is_zip(path):
        yield from _walk_zip(path)
    elif is_tar(path):
        yield from _walk_tar(path)
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        yield from _single_file(path.parent, path)
    else:
        yield Skipped(str(path), "not an image, folder, tar or zip file")


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _valid_name(source: str) -> str | None:
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8; rename the file"
    return None


def _single_file(root: Path, path: Path) -> Iterator[ImageFile | Skipped]:
    source = os.path.relpath(path, root)
    problem = _valid_name(source)
    if problem:
        yield Skipped(os.fsencode(source).decode("utf-8", "replace"), problem)
        return
    try:
        info = path.stat()  # follows symlinks: a link to an image is ingested as the image
    except OSError as exc:
        reason = "symlink loop" if exc.errno == 40 else f"cannot read file: {exc.strerror}"
        yield Skipped(source, reason)
        return
    if not stat.S_ISREG(info.st_mode):
        yield Skipped(source, "not a regular file")
        return
    if info.st_size > MAX_FILE_BYTES:
        yield Skipped(source, f"file is {info.st_size} bytes, above the {MAX_FILE_BYTES} limit")
        return
    yield ImageFile(str(root), source, info.st_size, info.st_mtime, path.read_bytes)


def _walk_directory(root: Path) -> Iterator[ImageFile | Skipped]:
    visited: set[tuple[int, int]] = set()
    for current, dirs, files in os.walk(root, followlinks=True, onerror=None):
        try:
            info = os.stat(current)
        except OSError:
            dirs[:] = []
            continue
        identity = (info.st_dev, info.st_ino)
        if identity in visited:  # a symlink pointing back up the tree
            dirs[:] = []
            yield Skipped(os.path.relpath(current, root), "symlink loop; folder skipped")
            continue
        visited.add(identity)
        dirs.sort()
        for name in sorted(files):
            if _is_image_name(name):
                yield from _single_file(root, Path(current) / name)
            elif is_archive(Path(name)):
                yield from _archive_in_folder(root, Path(current) / name)


def _walk_zip(path: Path) -> Iterator[ImageFile | Skipped]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"cannot open zip archive {path}: {exc}") from None
    yield from _zip_members(str(path), "", archive, 1)


def _walk_tar(path: Path) -> Iterator[ImageFile | Skipped]:
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - stays open while members are read
        archive.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"cannot open tar archive {path}: {exc}") from None
    yield from _tar_members(str(path), "", archive, 1)


def _archive_in_folder(root: Path, path: Path) -> Iterator[ImageFile | Skipped]:
    """An archive found inside an ingested folder: its members are `sub/set.tar:member`."""
    prefix = os.path.relpath(path, root) + MEMBER_SEPARATOR
    try:
        if is_zip(path):
            archive: Any = zipfile.ZipFile(path)
            yield from _zip_members(str(root), prefix, archive, 1)
        else:
            archive = tarfile.open(path, "r:*")  # noqa: SIM115 - stays open while read
            archive.getmembers()
            yield from _tar_members(str(root), prefix, archive, 1)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        yield Skipped(prefix[:-1], f"cannot open archive: {exc}")


def _nested(root: str, prefix: str, name: str, data: bytes, depth: int):
    """Members of an archive stored inside an archive, read from memory (bounded depth)."""
    inner = prefix + name + MEMBER_SEPARATOR
    if depth >= MAX_ARCHIVE_DEPTH:
        yield Skipped(inner[:-1], f"archive nested deeper than {MAX_ARCHIVE_DEPTH}; extract it")
        return
    try:
        if is_zip(Path(name)):
            yield from _zip_members(root, inner, zipfile.ZipFile(io.BytesIO(data)), depth + 1)
        else:
            archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
            archive.getmembers()
            yield from _tar_members(root, inner, archive, depth + 1)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        yield Skipped(inner[:-1], f"cannot open archive: {exc}")


def _zip_members(
    root: str, prefix: str, archive: zipfile.ZipFile, depth: int
) -> Iterator[ImageFile | Skipped]:
    for member in archive.infolist():
        if member.is_dir():
            continue
        is_image, nested = _is_image_name(member.filename), is_archive(Path(member.filename))
        if not (is_image or nested):
            continue
        if member.file_size > MAX_FILE_BYTES:
            yield Skipped(
                prefix + member.filename, f"member is {member.file_size} bytes, above the limit"
            )
            continue
        if nested:
            data = archive.read(member)
            yield from _nested(root, prefix, member.filename, data, depth)
            continue
        mtime = time.mktime((*member.date_time, 0, 0, -1))
        yield ImageFile(
            root,
            prefix + member.filename,
            member.file_size,
            mtime,
            lambda m=member: archive.read(m),
        )


def _tar_members(
    root: str, prefix: str, archive: tarfile.TarFile, depth: int
) -> Iterator[ImageFile | Skipped]:
    for member in archive.getmembers():
        if not member.isfile():
            continue
        is_image, nested = _is_image_name(member.name), is_archive(Path(member.name))
        if not (is_image or nested):
            continue
        if member.size > MAX_FILE_BYTES:
            yield Skipped(prefix + member.name, f"member is {member.size} bytes, above the limit")
            continue
        read = _tar_reader(archive, member)
        if nested:
            yield from _nested(root, prefix, member.name, read(), depth)
            continue
        yield ImageFile(root, prefix + member.name, member.size, float(member.mtime), read)


def _tar_reader(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        handle = archive.extractfile(member)
        if handle is None:
            raise OSError("member has no data")
        return handle.read()

    return read
