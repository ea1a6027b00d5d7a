"""Opening a collection for ingest: create it, or check it and bring its payload schema up to date.

Payload schema versions (recorded as `payload_schema` in the collection's metadata):
  1: one point per content hash; a second copy of an image was only counted, its path and labels
     dropped; `label=` matched the exact case.
  2: one point per file location (root + source) reusing the vectors of identical content;
     `label_keys` holds the case-folded labels that `label=` filters match.
"""

from __future__ import annotations

from typing import Any

from pixseek.ingest.plan import label_keys
from pixseek.ingest.state import CollectionState

from pixseek.errors import CollectionExists, CollectionNotFound
from pixseek.models.bundle import ImageEmbedders
from pixseek.phash import PHASH_BITS, PHASH_VECTOR
from pixseek.store import CollectionInfo, VectorStore

PAYLOAD_SCHEMA = 2
SCHEMA_KEY = "payload_schema"
ROOTS_KEY = "roots"


def schema_of(info: CollectionInfo) -> int:
    return int((info.metadata or {}).get(SCHEMA_KEY, 1))


def new_metadata(embedders: ImageEmbedders) -> dict[str, Any]:
    return {**embedders.metadata, SCHEMA_KEY: PAYLOAD_SCHEMA}


def open_for_ingest(
    store: VectorStore, embedders: ImageEmbedders, name: str, notes: list[str]
) -> CollectionState:
    """The collection's current state; created when missing, migrated when older (noted)."""
    sizes = {**embedders.vector_sizes, PHASH_VECTOR: PHASH_BITS}  # hashes: duplicates
    info = get_or_create(store, name, sizes, new_metadata(embedders))
    if info is None:
        return CollectionState()
    embedders.check_compatible(name, info.metadata, info.vectors)
    if schema_of(info) < PAYLOAD_SCHEMA:
        notes.append(migrate(store, name))
    return CollectionState.load(store, name)


def get_or_create(
    store: VectorStore, name: str, vectors: dict[str, int], metadata: dict[str, Any]
) -> CollectionInfo | None:
    """The existing collection, or None once this call has created it. The store takes the
    collection's lock to create it; a collection that another process created meanwhile is
    opened like any other (the embedded store then says it is busy while that process runs)."""
    info = store.get_collection(name)
    if info is not None:
        return info
    try:
        store.create_collection(name, vectors, metadata)
    except CollectionExists:
        info = store.get_collection(name)
        if info is None:
            raise
        return info
    return None


def record_roots(store: VectorStore, name: str, roots: set[str]) -> None:
    """Remember the folders and archives ingested into the collection: `collections repair`
    names them, since ingesting them again restores points that could not be read."""
    info = store.get_collection(name)
    if info is None:
        return
    known = set(info.metadata.get(ROOTS_KEY, []))
    if not roots <= known:
        store.update_metadata(name, {**info.metadata, ROOTS_KEY: sorted(known | roots)})


def migrate(store: VectorStore, name: str) -> str:
    """Bring a collection to the current payload schema; returns the line that says what it did."""
    info = store.get_collection(name)
    if info is None:
        raise CollectionNotFound(name)
    old = schema_of(info)
    if old >= PAYLOAD_SCHEMA:
        return f"collection {name!r} is at payload schema {old}: nothing to migrate"
    points = 0
    for point in store.scroll(name, fields=["labels"]):
        keys = label_keys(point.payload.get("labels") or [])
        store.set_payload(name, point.id, {"label_keys": keys})
        points += 1
    store.update_metadata(name, {**info.metadata, SCHEMA_KEY: PAYLOAD_SCHEMA})
    return (
        f"collection {name!r}: payload schema {old} -> {PAYLOAD_SCHEMA} ({points} points); "
        "copies of an image that schema 1 kept as one point come back with their own paths and "
        "labels when their folders are ingested again"
    )
