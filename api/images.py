"""Image bytes for the API, found only through a stored point's payload.

A request names a collection and a point id; both are checked (collection name rules, UUID), the
point is fetched by id from the store, and the file is read from the `root` + `source` that ingest
recorded (a folder, or a member of a tar/zip archive). No string from the request is ever joined
into a filesystem path. Thumbnails are cached in memory (LRU, 64 MiB).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixseek.api.errors import ApiError, NotFound

from pixseek.errors import CollectionNotFound
from pixseek.media import read_image_bytes, thumbnail_jpeg
from pixseek.store.base import VectorStore, check_collection_name

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}
MIN_THUMBNAIL, MAX_THUMBNAIL = 32, 1024


@dataclass
class ImageBytes:
    data: bytes
    media_type: str
    etag: str
    filename: str


def check_point_id(value: str) -> str:
    """The canonical (lower-case, hyphenated) UUID; 422 for anything else."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ApiError(422, f"{value[:80]!r} is not a point id; point ids are UUIDs") from None


def check_collection(value: str) -> str:
    check_collection_name(value)  # UserError -> 422
    return value


class Images:
    def __init__(self, store: VectorStore, cache_bytes: int = 64 * 1024 * 1024) -> None:
        self.store = store
        self.cache_bytes = cache_bytes
        self._thumbnails: OrderedDict[tuple[str, str, int], ImageBytes] = OrderedDict()
        self._cached = 0  # bytes held by the thumbnail cache
        self._lock = threading.Lock()

    def payload(self, collection: str, point_id: str) -> dict[str, Any]:
        name, pid = check_collection(collection), check_point_id(point_id)
        if self.store.get_collection(name) is None:
            raise CollectionNotFound(name)
        found = self.store.retrieve(name, [pid])
        if not found:
            raise NotFound(f"point {pid} is not in collection {name!r}")
        return found[0].payload

    def original(self, collection: str, point_id: str) -> ImageBytes:
        payload = self.payload(collection, point_id)
        data = read_image_bytes(payload)
        if data is None:
            raise NotFound(
                f"the image file of point {point_id} is gone from where it was ingested; "
                "re-ingest its folder or archive"
            )
        media = MEDIA_TYPES.get(str(payload.get("format", "")).upper(), "application/octet-stream")
        return ImageBytes(data, media, _etag(payload, "full"), _filename(payload))

    def thumbnail(self, collection: str, point_id: str, size: int) -> ImageBytes:
        if not MIN_THUMBNAIL <= size <= MAX_THUMBNAIL:
            raise ApiError(422, f"size must be between {MIN_THUMBNAIL} and {MAX_THUMBNAIL}")
        key = (check_collection(collection), check_point_id(point_id), size)
        with self._lock:
            cached = self._thumbnails.get(key)
            if cached is not None:
                self._thumbnails.move_to_end(key)
                return cached
        full = self.original(collection, point_id)
        data = thumbnail_jpeg(full.data, size)
        if data is None:
            raise NotFound(
                f"the image file of point {key[1]} can no longer be decoded; re-ingest it"
            )
        stem = Path(full.filename).stem or key[1]
        thumb = ImageBytes(data, "image/jpeg", f"{full.etag}-{size}", f"{stem}-{size}.jpg")
        with self._lock:
            if key not in self._thumbnails:
                self._thumbnails[key] = thumb
                self._cached += len(thumb.data)
            while self._cached > self.cache_bytes and self._thumbnails:
                self._cached -= len(self._thumbnails.popitem(last=False)[1].data)
        return thumb


def _etag(payload: dict[str, Any], variant: str) -> str:
    """An entity tag (unquoted): the file's SHA-256 from ingest identifies its bytes."""
    digest = "".join(c for c in str(payload.get("sha256") or "") if c.isalnum())[:32]
    return f"{digest or 'x'}-{variant}"


def _filename(payload: dict[str, Any]) -> str:
    name = Path(str(payload.get("source") or "image")).name
    return "".join(c for c in name if c.isalnum() or c in "._-")[:120] or "image"
