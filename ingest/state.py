"""What the collection already holds, read once at the start of an ingest run.

The store is the only source of truth (no side manifest that could drift from it): one scroll
over the bookkeeping fields gives, per (root, source), the point ids and their size/mtime, and
per content hash a point whose vectors a new copy of the same picture can reuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixseek.store import VectorStore

BOOKKEEPING_FIELDS = [
    "root",
    "source",
    "bytes",
    "mtime",
    "sha256",
    "labels",
    "label_keys",
    "captions",
    "meta",
]
LABEL_FIELDS = ("labels", "label_keys", "captions", "meta")


@dataclass
class StoredEntry:
    id: str
    size: int | None
    mtime: float | None
    labels: dict[str, Any]

    def unchanged(self, size: int, mtime: float) -> bool:
        return self.size == size and self.mtime is not None and abs(self.mtime - mtime) < 1e-6


@dataclass
class CollectionState:
    by_key: dict[tuple[str, str], list[StoredEntry]] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    by_sha: dict[str, str] = field(default_factory=dict)  # content hash -> a point holding it

    @classmethod
    def load(cls, store: VectorStore, collection: str) -> CollectionState:
        state = cls()
        for point in store.scroll(collection, fields=BOOKKEEPING_FIELDS):
            payload = point.payload
            key = (str(payload.get("root", "")), str(payload.get("source", "")))
            labels = {k: payload[k] for k in LABEL_FIELDS if k in payload}
            entry = StoredEntry(point.id, payload.get("bytes"), payload.get("mtime"), labels)
            state.by_key.setdefault(key, []).append(entry)
            state.ids.add(point.id)
            if payload.get("sha256"):
                state.by_sha.setdefault(str(payload["sha256"]), point.id)
        return state

    def entries_under(self, roots: set[str]) -> list[tuple[tuple[str, str], StoredEntry]]:
        return [
            (key, e) for key, entries in self.by_key.items() if key[0] in roots for e in entries
        ]
