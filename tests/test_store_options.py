"""Per-collection storage options (quantization, on-disk vectors, HNSW) on both backends."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from pixseek.errors import InputError
from pixseek.store import Nearest, PointRecord, SearchRequest
from pixseek.store.edge import EdgeStore
from pixseek.store.options import StorageOptions


def _points(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, list[PointRecord]]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        PointRecord(str(uuid.UUID(int=i + 1)), {"clip": vectors[i]}, {"labels": [f"l{i % 3}"]})
        for i in range(n)
    ]
    return vectors, records


@pytest.mark.parametrize(
    "options",
    [
        StorageOptions("int8", on_disk=True, hnsw_m=24, hnsw_ef_construct=80, hnsw_ef=96),
        StorageOptions("binary", on_disk=True, oversampling=8.0),
    ],
    ids=["int8", "binary"],
)
def test_options_recorded_applied_and_searched(store, tmp_path: Path, options: StorageOptions):
    info = store.create_collection("q", {"clip": 1024}, {"models": {"clip": "m"}}, options)
    assert info.storage == options
    vectors, records = _points(3000, 1024)  # 12 MB: above the indexing threshold
    store.upsert("q", records)
    store.optimize("q")
    # Recorded with the collection, and read back by a fresh store object.
    store._storage_cache.clear()
    fresh = EdgeStore(store.root) if isinstance(store, EdgeStore) else store
    (listed,) = fresh.list_collections()
    assert listed.storage == options and listed.metadata == {"models": {"clip": "m"}}
    # Applied by the backend itself, not only remembered.
    if isinstance(store, EdgeStore):
        config = json.loads((store.root / "q" / "shard" / "edge_config.json").read_text())
        clip = config["vectors"]["clip"]
        key = "scalar" if options.quantization == "int8" else "binary"
        assert key in clip["quantization_config"] and clip["memory"] == "cold"
        segments = [
            json.loads(p.read_text())["config"]["vector_data"]["clip"]
            for p in (store.root / "q" / "shard" / "segments").glob("*/segment.json")
        ]
        assert any(s["quantization_config"] for s in segments)  # the index has the codes
        # On disk means the payloads and payload indexes too: RAM keeps codes and graph.
        assert config["payload_memory"] == "cold"
        schema = store._shard("q").info().payload_schema
        assert schema and all(str(i.params.memory) == "Memory.Cold" for i in schema.values())
        if options.hnsw_m:
            assert clip["hnsw_config"]["m"] == 24
    else:
        params = store.client.get_collection("q").config.params.vectors["clip"]
        assert params.on_disk is True
        kind = "scalar" if options.quantization == "int8" else "binary"
        assert getattr(params.quantization_config, kind) is not None
    # Rescored search still finds each stored vector first, with its exact cosine.
    for i in (0, 777, 2999):
        (top,) = store.search("q", SearchRequest(Nearest(vectors[i]), limit=1))
        assert top.id == records[i].id and top.score == pytest.approx(1.0, abs=1e-4)
    # Filters read the on-disk payload indexes.
    from pixseek.search.filters import compile_filters

    label_1 = compile_filters(["label=l1"])
    hits = store.search("q", SearchRequest(Nearest(vectors[778]), limit=5, filter=label_1))
    assert hits[0].id == records[778].id and all(h.payload["labels"] == ["l1"] for h in hits)


def test_default_is_exact_and_old_collections_read_as_default(store):
    info = store.create_collection("d", {"clip": 8}, {})
    assert info.storage == StorageOptions() and not info.storage.quantized
    assert store.get_collection("d").storage.describe() == "exact float32"


def test_bad_options_are_one_line_input_errors(store):
    with pytest.raises(InputError, match="unknown quantization 'pq'"):
        store.create_collection("x", {"clip": 8}, {}, StorageOptions("pq"))
    with pytest.raises(InputError, match="hnsw_m must be between 4 and 4096"):
        store.create_collection("x", {"clip": 8}, {}, StorageOptions(hnsw_m=1))
    assert store.get_collection("x") is None


def test_on_disk_payload_indexes_for_a_qdrant_server():
    # qdrant-client's local mode has no payload indexes: what a server is sent, checked here.
    from pixseek.store import server

    for kind in ("keyword", "integer", "float", "datetime", "text"):
        assert server.index_schema(kind, StorageOptions("int8", on_disk=True)).on_disk is True
        assert server.index_schema(kind, StorageOptions()) == server._INDEX_TYPES[kind]


def test_describe():
    assert StorageOptions("int8", on_disk=True).describe() == "int8 (x2 rescored), on disk"
    assert StorageOptions("binary", hnsw_m=32).describe() == "binary (x8 rescored), m=32"
