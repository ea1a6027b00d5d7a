"""Per-collection vector storage options, chosen when a collection is created.

The defaults keep search exact and vectors in RAM, which is right for small collections. At
scale, `quantization` keeps a compressed copy of every vector for the index (int8: 4x smaller,
binary: 32x smaller) and rescores the best `oversampling` x limit candidates with the original
float32 vectors, which `on_disk` can then leave on disk (memory-mapped). `hnsw_m`,
`hnsw_ef_construct` and `hnsw_ef` tune the HNSW graph and its search breadth.
Both backends (Qdrant Edge and a Qdrant server) receive the same settings, and the options are
recorded with the collection so `pixseek collections` shows them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from pixseek.errors import InputError

QUANTIZATIONS = ("none", "int8", "binary")
# Candidates rescored with the original vectors, as a multiple of the limit. Binary codes lose
# more, so they need more candidates for the same recall: x4 gave recall@10 0.50 at 100k points
# (bench/results/scale.md), x10 gave 1.0 at 20k.
DEFAULT_OVERSAMPLING = {"none": 1.0, "int8": 2.0, "binary": 8.0}


@dataclass(frozen=True)
class StorageOptions:
    quantization: str = "none"  # none | int8 | binary
    on_disk: bool = False  # original vectors memory-mapped from disk instead of held in RAM
    hnsw_m: int | None = None  # edges per node (Qdrant's default: 16)
    hnsw_ef_construct: int | None = None  # build breadth (Qdrant's default: 100)
    hnsw_ef: int | None = None  # search breadth (Qdrant's default: the limit, at least 64-ish)
    oversampling: float | None = None  # None: DEFAULT_OVERSAMPLING[quantization]
    rescore: bool = True  # rescore quantized candidates with the original vectors

    def validated(self) -> StorageOptions:
        if self.quantization not in QUANTIZATIONS:
            raise InputError(
                f"unknown quantization {self.quantization!r}; use one of {', '.join(QUANTIZATIONS)}"
            )
        for name in ("hnsw_m", "hnsw_ef_construct", "hnsw_ef"):
            value = getattr(self, name)
            if value is not None and not 4 <= value <= 4096:
                raise InputError(f"{name} must be between 4 and 4096, not {value}")
        if self.oversampling is not None and not 1.0 <= self.oversampling <= 64.0:
            raise InputError(f"oversampling must be between 1 and 64, not {self.oversampling}")
        return self

    @property
    def quantized(self) -> bool:
        return self.quantization != "none"

    @property
    def effective_oversampling(self) -> float:
        if self.oversampling is not None:
            return self.oversampling
        return DEFAULT_OVERSAMPLING[self.quantization]

    @property
    def hnsw_m_or_default(self) -> int:
        return self.hnsw_m or 16

    @property
    def hnsw_ef_construct_or_default(self) -> int:
        return self.hnsw_ef_construct or 100

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> StorageOptions:
        """Options recorded with a collection; unknown keys (newer versions) are ignored."""
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        """One short line for `pixseek collections`: 'int8 (x2.0 rescored), on disk, m=32'."""
        parts = ["exact float32" if not self.quantized else self.quantization]
        if self.quantized:
            rescored = "rescored" if self.rescore else "no rescore"
            parts[0] += f" (x{self.effective_oversampling:g} {rescored})"
        if self.on_disk:
            parts.append("on disk")
        for label, value in (
            ("m", self.hnsw_m),
            ("ef_construct", self.hnsw_ef_construct),
            ("ef", self.hnsw_ef),
        ):
            if value is not None:
                parts.append(f"{label}={value}")
        return ", ".join(parts)


class CreateWith:
    """A store whose new collections get `storage`: ingest creates collections without storage
    options of its own, so the CLI and the server hand it the store wrapped in this."""

    def __init__(self, store: Any, storage: StorageOptions) -> None:
        self._store = store
        self._storage = storage.validated()

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._store, attribute)

    def create_collection(
        self,
        name: str,
        vectors: dict[str, int],
        metadata: dict[str, Any],
        storage: StorageOptions | None = None,
    ) -> Any:
        return self._store.create_collection(name, vectors, metadata, storage or self._storage)


def check_storage_request(info: Any, requested: StorageOptions | None) -> None:
    """Storage options are chosen when a collection is created: refuse to silently ignore them."""
    if info is None or requested is None or info.storage == requested.validated():
        return
    raise InputError(
        f"collection {info.name!r} already exists with storage '{info.storage.describe()}'; "
        "storage options apply when a collection is created: drop it first "
        "(`pixseek collections drop`) or ingest into a new collection"
    )
