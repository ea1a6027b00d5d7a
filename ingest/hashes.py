"""The incremental pass that gives an existing collection its perceptual hashes.

Adds the `phash` vector to the collection when it lacks one (Qdrant server: in place; Qdrant
Edge: the shard is copied once), then hashes every point that has no `phash` payload yet,
reading its image back from where it was ingested. The vector is written before the payload,
so a run stopped at any moment is finished by the next one, which only does what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models

from pixseek.decode import ImageRejected, decode_image
from pixseek.errors import CollectionNotFound
from pixseek.media import read_image_bytes
from pixseek.phash import PHASH_BITS, PHASH_VECTOR, from_hex, phash, to_hex, to_vector
from pixseek.store import VectorStore

MODEL_SIZE = 224  # JPEG draft decoding as ingest does it for a 224 px model
_CHUNK = 64


@dataclass
class HashUpdate:
    collection: str
    vector_added: bool = False
    hashed: int = 0  # decoded and hashed now
    from_payload: int = 0  # vector written from a hash the payload already had
    failed: list[dict[str, str]] = field(default_factory=list)  # image gone or undecodable

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "vector_added": self.vector_added,
            "hashed": self.hashed,
            "from_payload": self.from_payload,
            "failed": self.failed,
        }


def update_hashes(
    store: VectorStore,
    collection: str,
    max_pixels: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> HashUpdate:
    info = store.get_collection(collection)
    if info is None:
        raise CollectionNotFound(collection)
    result = HashUpdate(collection)
    result.vector_added = store.add_vector(collection, PHASH_VECTOR, PHASH_BITS)
    # After adding the vector, every point lacks it, including those whose payload has a hash.
    todo_filter = None
    if not result.vector_added:
        todo_filter = models.Filter(must=[models.IsEmptyCondition(is_empty={"key": PHASH_VECTOR})])
    fields = ["root", "source", PHASH_VECTOR]
    todo = list(store.scroll(collection, fields, todo_filter))
    for start in range(0, len(todo), _CHUNK):
        chunk = todo[start : start + _CHUNK]
        vectors: dict[str, dict[str, list[float]]] = {}
        payloads: dict[str, str] = {}
        for point in chunk:
            known = point.payload.get(PHASH_VECTOR)
            if isinstance(known, str):
                vectors[point.id] = {PHASH_VECTOR: to_vector(from_hex(known))}
                result.from_payload += 1
                continue
            value = _hash_of(point.payload, max_pixels, result)
            if value is not None:
                vectors[point.id] = {PHASH_VECTOR: to_vector(value)}
                payloads[point.id] = to_hex(value)
                result.hashed += 1
        store.update_vectors(collection, vectors)
        for point_id, hex_value in payloads.items():
            store.set_payload(collection, point_id, {PHASH_VECTOR: hex_value})
        if on_progress is not None:
            on_progress(min(start + _CHUNK, len(todo)), len(todo))
    return result


def _hash_of(payload: dict[str, Any], max_pixels: int, result: HashUpdate) -> int | None:
    source = str(payload.get("source", "?"))
    data = read_image_bytes(payload)
    if data is None:
        result.failed.append({"source": source, "reason": "image not found where it was ingested"})
        return None
    try:
        return phash(decode_image(data, max_pixels, MODEL_SIZE).image)
    except ImageRejected as exc:
        result.failed.append({"source": source, "reason": str(exc)})
        return None
