"""Typed records and the one interface every vector store backend implements.

Filters are expressed with qdrant-client's `models.Filter` (the server's own schema, so raw
Qdrant filter JSON validates into it); the embedded backend translates them to Qdrant Edge.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from pixseek import payload
from pixseek.errors import UserError
from pixseek.store.options import StorageOptions

if TYPE_CHECKING:  # qdrant-client is slow to import; commands that need no filter skip it
    from qdrant_client import models

CLIP_VECTOR = "clip"
DINO_VECTOR = "dino"
TEXT_VECTOR = "text"  # BM25 sparse vector over the keyword text (pixseek.keywords)

# Payload fields that get an index before any upload, so filtered search stays fast.
PAYLOAD_INDEXES = payload.PAYLOAD_INDEXES

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass
class SparseVector:
    """A sparse vector (BM25 term weights): each backend converts it to its own type."""

    indices: list[int]
    values: list[float]


Vector = np.ndarray | Sequence[float] | SparseVector


def check_collection_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise UserError(
            f"invalid collection name {name!r}; use 1-63 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


@dataclass
class PointRecord:
    id: str
    vectors: dict[str, Vector]
    payload: dict[str, Any]


@dataclass
class StoredPoint:
    id: str
    payload: dict[str, Any]
    vectors: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    group_size: int | None = None  # with --collapse near: the near-duplicate group's size


@dataclass
class CollectionInfo:
    name: str
    points: int
    vectors: dict[str, int]
    metadata: dict[str, Any] = field(default_factory=dict)
    storage: StorageOptions = field(default_factory=StorageOptions)
    sparse_vectors: list[str] = field(default_factory=list)  # e.g. ["text"]: keyword index
    index_pending: bool = False  # an index build was interrupted: the next ingest resumes it
    error: str | None = None  # set by list_collections for a collection that cannot be opened


@dataclass
class IndexStatus:
    """How much of a collection the vector index (HNSW) covers; the rest is searched exactly."""

    points: int
    indexed_vectors: int  # summed over the named vectors (clip, dino)
    segments: int
    changed: bool = False  # this call rebuilt segments
    queued: bool = False  # a server builds the index in the background (pixseek serve)

    def describe(self) -> str:
        rebuilt = ", index rebuilt" if self.changed else ""
        if self.queued:
            rebuilt = "; the server is building the index in the background"
        return (
            f"{self.indexed_vectors} vectors indexed (HNSW) in {self.segments} segment(s) "
            f"of {self.points} points{rebuilt}"
        )


@dataclass
class Nearest:
    """Plain nearest-neighbour search with one query vector."""

    vector: Vector
    using: str = CLIP_VECTOR


@dataclass
class Recommend:
    """Several positive and negative example vectors, scored by Qdrant's recommend API.

    The sum-of-scores strategy ranks by sum(cos(pos, x)) - sum(cos(neg, x)), which is what
    averaging example embeddings does, and it is the strategy both backends implement.
    """

    positives: list[Vector]
    negatives: list[Vector] = field(default_factory=list)
    using: str = CLIP_VECTOR


@dataclass
class RankFusion:
    """Reciprocal-rank fusion of several searches, run by Qdrant as one query with prefetches."""

    searches: list[Nearest]
    weights: list[float] | None = None
    k: int = 60
    candidates: int = 100
    fusion: Literal["rrf", "dbsf"] = "rrf"  # dbsf: distribution-based score fusion (no k)


QueryPlan = Nearest | Recommend | RankFusion


@dataclass
class SearchRequest:
    plan: QueryPlan
    limit: int = 10
    offset: int = 0
    filter: models.Filter | None = None
    threshold: float | None = None
    # Maximal marginal relevance (Qdrant's MMR): 0 = plain relevance order, 1 = most diverse.
    # Needs a Nearest plan, or a RankFusion whose candidates MMR re-picks by `diversity_vector`.
    diversity: float | None = None
    diversity_candidates: int = 100
    diversity_vector: Vector | None = None


@dataclass(frozen=True)
class FacetCount:
    value: str | int | bool
    count: int


@dataclass(frozen=True)
class Browse:
    """A page of a collection without a query, ordered by a range-indexed payload field:
    `mtime` (newest first by default) or `taken`; points without the field are left out."""

    limit: int = 50
    offset: int = 0
    filter: models.Filter | None = None
    newest_first: bool = True
    order_by: Literal["mtime", "taken"] = "mtime"


class VectorStore(Protocol):
    """The operations pixseek needs from Qdrant; implemented by EdgeStore and ServerStore."""

    def list_collections(self) -> list[CollectionInfo]: ...

    def get_collection(self, name: str) -> CollectionInfo | None: ...

    def create_collection(
        self,
        name: str,
        vectors: dict[str, int],
        metadata: dict[str, Any],
        storage: StorageOptions | None = None,
    ) -> CollectionInfo: ...

    def drop_collection(self, name: str) -> bool: ...

    def update_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        """Replace the collection's metadata (models, payload schema version)."""
        ...

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None: ...

    def set_payload(self, name: str, point_id: str, payload: dict[str, Any]) -> None: ...

    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[StoredPoint]: ...

    def scroll(
        self,
        name: str,
        fields: Sequence[str] | None = None,
        filter: models.Filter | None = None,
        page_size: int = 1000,
    ) -> Iterator[StoredPoint]: ...

    def count(self, name: str, filter: models.Filter | None = None) -> int: ...

    def search(self, name: str, request: SearchRequest) -> list[Hit]: ...

    def search_batch(
        self,
        name: str,
        requests: Sequence[SearchRequest],
        fields: Sequence[str] | None = None,
        exact: bool = False,
    ) -> list[list[Hit]]:
        """Several Nearest/Recommend searches in one call (one result list per request);
        `fields` limits the payload returned, `exact` skips the HNSW index."""
        ...

    def facet(
        self, name: str, key: str, limit: int = 50, filter: models.Filter | None = None
    ) -> list[FacetCount]:
        """Exact counts of the most frequent values of an indexed keyword/integer field."""
        ...

    def browse(self, name: str, request: Browse) -> list[StoredPoint]:
        """Points ordered by `mtime` (created on first use where a collection lacks it)."""
        ...

    def add_vector(self, name: str, vector: str, size: int) -> bool:
        """Give an existing collection another named vector (cosine); False if it had it."""
        ...

    def update_vectors(self, name: str, vectors: dict[str, dict[str, Vector]]) -> None:
        """Set some named vectors of existing points ({point id: {vector name: values}})."""
        ...

    def add_sparse_vector(self, name: str, vector: str) -> bool:
        """Give an existing collection a sparse vector (IDF modifier); False if it had it."""
        ...

    def optimize(self, name: str) -> IndexStatus:
        """Build the vector index where the store does not on its own (blocking; may take
        minutes at 100k+ points); segments below the indexing threshold stay exact."""
        ...

    def close(self) -> None: ...


def as_list(vector: Vector) -> list[float]:
    if isinstance(vector, np.ndarray):
        return vector.astype(np.float32, copy=False).tolist()
    return [float(x) for x in vector]


def is_point_id(value: str) -> bool:
    """pixseek point ids are UUIDs; anything else cannot name a point."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def stored_point(record: Any, with_vectors: bool) -> StoredPoint:
    """Convert a Qdrant record (Edge or client: both expose id, payload, vector)."""
    vectors: dict[str, Any] = {}
    if with_vectors and isinstance(record.vector, dict):
        vectors = {
            k: SparseVector(list(v.indices), list(v.values)) if hasattr(v, "indices") else list(v)
            for k, v in record.vector.items()
        }
    return StoredPoint(id=str(record.id), payload=record.payload or {}, vectors=vectors)
