"""Vector store: one interface over Qdrant Edge (embedded default) and a Qdrant server."""

from __future__ import annotations

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


def open_store(settings: Settings) -> VectorStore:
    """The embedded Qdrant Edge store, or a Qdrant server when PIXSEEK_QDRANT_URL is set."""
    if settings.qdrant_url:
        from pixseek.store.server import ServerStore

        return ServerStore(settings.qdrant_url, settings.qdrant_api_key)
    from pixseek.store.edge import EdgeStore

    return EdgeStore(settings.store_dir)
