"""Vector store: one interface over Qdrant Edge (embedded default) and a Qdrant server."""

from __future__ import annotations

import os

from pixseek.config import Settings
from pixseek.store.base import (
    CLIP_VECTOR,
    DINO_VECTOR,
    CollectionInfo,
    Hit,
    IndexStatus,
    Nearest,
    PointRecord,
    RankFusion,
    Recommend,
    SearchRequest,
    StoredPoint,
    VectorStore,
)

__all__ = [
    "CLIP_VECTOR",
    "DINO_VECTOR",
    "CollectionInfo",
    "Hit",
    "IndexStatus",
    "Nearest",
    "PointRecord",
    "RankFusion",
    "Recommend",
    "SearchRequest",
    "StoredPoint",
    "VectorStore",
    "open_store",
]


def open_store(settings: Settings, delegate: bool = True) -> VectorStore:
    """The embedded Qdrant Edge store, or a Qdrant server when PIXSEEK_QDRANT_URL is set.

    While a `pixseek serve` holds the embedded store's data dir, this returns a RemoteStore that
    sends every call to that server (in the server's own process it opens the store itself).
    """
    if settings.qdrant_url:
        from pixseek.store.server import ServerStore

        return ServerStore(settings.qdrant_url, settings.qdrant_api_key)
    if delegate:
        from pixseek.serverfile import find_server

        address = find_server(settings.data_dir)
        if address is not None and address.pid != os.getpid():  # not the server itself
            from pixseek.store.remote import RemoteStore

            return RemoteStore(address)
    from pixseek.store.edge import EdgeStore

    return EdgeStore(settings.store_dir)
