"""The server's background index build: a child process on a copy, writes journaled and
re-applied, searches answered meanwhile, an interrupted build resumed at the next start."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
from pixseek.api.indexer import BackgroundIndexer, IndexedStore

from pixseek.store import Nearest, PointRecord, SearchRequest
from pixseek.store.edge import EdgeStore

DIM = 1024  # 3,000 x 1,024 floats = 12 MB: above Qdrant's indexing threshold


def _records(start: int, count: int, rng: np.random.Generator) -> list[PointRecord]:
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        PointRecord(str(uuid.UUID(int=start + i + 1)), {"clip": vectors[i]}, {"n": start + i})
        for i in range(count)
    ]


def _wait_idle(indexer: BackgroundIndexer, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = indexer.status()
        if status["building"] is None and not status["pending"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"index build did not finish: {indexer.status()}")


def test_build_in_background_keeps_writes_and_searches(tmp_path: Path):
    rng = np.random.default_rng(0)
    edge = EdgeStore(tmp_path / "collections")
    edge.create_collection("big", {"clip": DIM}, {})
    base = _records(0, 3000, rng)
    edge.upsert("big", base)
    indexer = BackgroundIndexer(edge, tmp_path / "server")
    store = IndexedStore(edge, indexer)
    indexer.start()
    try:
        queued = store.optimize("big")  # returns at once
        assert queued.queued and queued.indexed_vectors == 0
        latencies: list[float] = []
        deadline = time.monotonic() + 240
        while indexer.status()["building"] is None and indexer.status()["pending"]:
            time.sleep(0.05)  # wait for the copy to start
        # While the child builds: searches answer, and writes land.
        added = _records(5000, 20, rng)
        store.upsert("big", added)
        store.delete("big", [base[0].id, base[1].id])
        store.set_payload("big", base[2].id, {"n": -1})
        while indexer.status()["building"] == "big" and time.monotonic() < deadline:
            began = time.perf_counter()
            store.search("big", SearchRequest(Nearest(base[5].vectors["clip"]), limit=3))
            latencies.append(time.perf_counter() - began)
        _wait_idle(indexer)
    finally:
        indexer.stop()
    assert indexer.status().get("last_error") is None, indexer.status()
    # Answered all through the build: only the swap (reopening the shard) holds a search back
    # for a moment, so a few may be slow on a loaded machine, not most.
    assert len(latencies) >= 10 and float(np.percentile(latencies, 90)) < 0.5, latencies[:20]
    status = edge.index_status("big")
    assert status.indexed_vectors > 0 and status.points == 3000 + 20 - 2
    assert edge.retrieve("big", [base[0].id]) == []
    assert edge.retrieve("big", [base[2].id])[0].payload == {"n": -1}
    (top,) = edge.search("big", SearchRequest(Nearest(added[7].vectors["clip"]), limit=1))
    assert top.id == added[7].id
    assert not list((tmp_path / "server").glob("*.building"))


def test_interrupted_build_resumes_at_next_start(tmp_path: Path):
    rng = np.random.default_rng(1)
    edge = EdgeStore(tmp_path / "collections")
    edge.create_collection("big", {"clip": DIM}, {})
    edge.upsert("big", _records(0, 3000, rng))
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    # What a server killed mid-build leaves: the pending record and a half-made copy.
    (server_dir / "index-pending.json").write_text(json.dumps(["big"]))
    (server_dir / "big.building").mkdir()
    indexer = BackgroundIndexer(edge, server_dir)
    indexer.start()
    try:
        _wait_idle(indexer)
    finally:
        indexer.stop()
    assert edge.index_status("big").indexed_vectors > 0
    assert json.loads((server_dir / "index-pending.json").read_text()) == []
