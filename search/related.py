"""The copies of one stored image: the same bytes at other locations, and near duplicates.

Exact copies share the payload `sha256`; near duplicates are within NEAR_MAX_DISTANCE bits of
its perceptual hash (collections ingested with hashes; see search/duplicates.py).
"""

from __future__ import annotations

from pixseek.search.duplicates import NEAR_MAX_DISTANCE
from qdrant_client import models

from pixseek.phash import PHASH_VECTOR, from_hex, score_for_distance, to_vector
from pixseek.store import CollectionInfo, Hit, Nearest, SearchRequest, StoredPoint, VectorStore

MAX_RELATED = 50


def related(store: VectorStore, info: CollectionInfo, point: StoredPoint) -> list[Hit]:
    """Other points showing the same picture; score 1 for exact copies, else hash similarity."""
    found: dict[str, Hit] = {}
    digest = point.payload.get("sha256")
    if isinstance(digest, str):
        same = models.Filter(
            must=[models.FieldCondition(key="sha256", match=models.MatchValue(value=digest))]
        )
        for copy in store.scroll(info.name, filter=same, page_size=MAX_RELATED):
            if copy.id != point.id and len(found) < MAX_RELATED:
                found[copy.id] = Hit(id=copy.id, score=1.0, payload=copy.payload)
    value = point.payload.get(PHASH_VECTOR)
    if PHASH_VECTOR in info.vectors and isinstance(value, str):
        request = SearchRequest(
            Nearest(to_vector(from_hex(value)), using=PHASH_VECTOR),
            limit=MAX_RELATED + 1,
            threshold=score_for_distance(NEAR_MAX_DISTANCE),
        )
        for hit in store.search(info.name, request):
            if hit.id != point.id and hit.id not in found:
                found[hit.id] = hit
    return list(found.values())[:MAX_RELATED]
