"""A damaged embedded store is never served silently: every kind of file in a collection folder
truncated or garbled gives a one-line error naming the collection (no traceback, no partial
result), other collections still open, `check` finds it and `repair` rebuilds what can be read.
Also: orphaned temporary segments go, an interrupted index build resumes, snapshots restore."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from pixseek.store import PointRecord
from pixseek.store.edge import EdgeStore, close_shards
from tests.conftest import run_pixseek

POINTS = 40
DIM = 32  # the tiny test CLIP model's embedding size


def _store_dir(env: dict) -> Path:
    return Path(env["PIXSEEK_DATA_DIR"]) / "collections"


def _fill(root: Path, name: str, points: int = POINTS) -> None:
    store = EdgeStore(root)
    store.create_collection(name, {"clip": DIM}, {"roots": ["/photos"]})
    rng = np.random.default_rng(len(name))
    vectors = rng.normal(size=(points, DIM)).astype(np.float32)
    store.upsert(
        name,
        [
            PointRecord(
                str(uuid.UUID(int=i + 1)),
                {"clip": vectors[i]},
                {"root": "/photos", "source": f"{i}.jpg", "labels": ["dog"]},
            )
            for i in range(points)
        ],
    )
    close_shards(root)


def _segment(root: Path, name: str) -> Path:
    (segment,) = [p for p in (root / name / "shard" / "segments").iterdir() if p.is_dir()]
    return segment


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _garble(path: Path, start: int = 0, length: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    data[start : start + length] = b"\xff" * min(length, len(data) - start)
    path.write_bytes(bytes(data))


DAMAGE = {
    "id-tracker truncated": lambda seg: _truncate(seg / "mutable_id_tracker.mappings"),
    "vectors truncated": lambda seg: _truncate(seg / "vector_storage-clip/vectors/chunk_0.mmap"),
    "payload truncated": lambda seg: _truncate(seg / "payload_storage/page_0.dat"),
    "segment config garbled": lambda seg: _garble(seg / "segment.json", 0, 64),
}


@pytest.fixture
def two(pixseek_env):
    root = _store_dir(pixseek_env)
    _fill(root, "bad")
    _fill(root, "good", 5)
    return root


def _one_line_error(err: str, name: str) -> None:
    lines = [line for line in err.strip().splitlines() if line]
    assert lines and all(line.startswith("pixseek: error:") for line in lines), err
    assert f"'{name}'" in lines[0] and "Traceback" not in err


def test_sealed_collections_are_listed_without_loading_a_shard(two, monkeypatch):
    """`pixseek collections` reads a closed collection's count from its seal (after the file
    checks), so listing 100k points costs milliseconds; an open or unsealed one is counted."""
    import qdrant_edge as qe

    def refuse(*args, **kwargs):
        raise AssertionError("a sealed collection was loaded to be listed")

    with monkeypatch.context() as patched:
        patched.setattr(qe.EdgeShard, "load", refuse)
        listed = {info.name: info.points for info in EdgeStore(two).list_collections()}
        assert listed == {"bad": POINTS, "good": 5}
        _garble(_segment(two, "bad") / "segment.json", 0, 64)  # same size: the digest sees it
        (bad, good) = EdgeStore(two).list_collections()
        assert "changed since it was written" in bad.error and "check" in bad.error
        assert good.error is None and good.points == 5
    store = EdgeStore(two)
    store.upsert("good", [PointRecord(str(uuid.UUID(int=99)), {"clip": np.ones(DIM)}, {})])
    # Open here, so unsealed on disk: counted live.
    assert {i.name: i.points for i in store.list_collections()}["good"] == 6


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_file_is_an_error_not_a_partial_result(cli, two, kind, pixseek_env):
    DAMAGE[kind](_segment(two, "bad"))
    code, out, err = cli("collections", "--json")
    assert code == 2
    listed = [json.loads(line) for line in out.splitlines()]
    assert {k: listed[0][k] for k in ("name", "points")} == {"name": "good", "points": 5}
    assert listed[1]["name"] == "bad" and "check" in listed[1]["error"]
    _one_line_error(err, "bad")

    from pixseek.errors import StoreCorrupt
    from pixseek.store import Nearest, SearchRequest

    query = SearchRequest(Nearest([1.0] + [0.0] * (DIM - 1)), limit=10)
    with pytest.raises(StoreCorrupt, match="collection 'bad' is damaged"):
        EdgeStore(two).search("bad", query)  # what `pixseek search` and the API run
    if kind == "vectors truncated":  # the command line, once: a process of its own
        searched = run_pixseek(["search", "a dog", "-c", "bad", "--json"], pixseek_env)
        assert searched.returncode == 2 and searched.stdout == ""
        _one_line_error(searched.stderr, "bad")

    code, out, err = cli("collections", "check", "bad")
    assert code == 2 and "repair" in err, (out, err)

    code, out, err = cli("collections", "repair", "bad")
    assert code == 0, (out, err)
    assert "repaired" in out
    assert " 0 lost" in out or "pixseek ingest /photos --collection bad" in out  # names the root
    code, out, err = cli("collections", "check", "bad")
    assert code == 0 and out.startswith("bad: ok"), err
    assert len(EdgeStore(two).search("bad", query)) == min(10, EdgeStore(two).count("bad"))


def test_garbled_vectors_are_found_by_check_and_dropped_by_repair(cli, two):
    _garble(_segment(two, "bad") / "vector_storage-clip/vectors/chunk_0.mmap", 0, DIM * 4 * 3)
    code, out, err = cli("collections", "check", "bad")
    assert code == 2 and "vector is damaged" in err
    code, out, err = cli("collections", "repair", "bad")
    assert code == 0 and f"{POINTS - 3} points kept, 3 lost" in out, (out, err)
    code, out, _ = cli("collections", "check", "bad")
    assert code == 0 and f"{POINTS - 3} points read" in out


def test_bad_metadata_file_breaks_only_its_collection(cli, two, monkeypatch):
    # In-process text search without the background ONNX export: that export's thread swaps
    # sys.stdout (torch.onnx) and leaves later CliRunner calls in this process printing nowhere.
    monkeypatch.setenv("PIXSEEK_TEXT_BACKEND", "torch")
    (two / "bad" / "pixseek.json").write_text("{not json")
    code, out, err = cli("collections")
    assert code == 2 and "good" in out and "pixseek.json is not valid JSON" in err
    code, out, err = cli("search", "a dog", "-c", "good", "--json")
    assert code == 0 and len(out.splitlines()) == 5, err
    code, out, err = cli("collections", "repair", "bad")
    assert code == 0 and f"{POINTS} points kept" in out and "pixseek.json was damaged" in err
    code, out, _ = cli("collections", "--json")
    assert code == 0 and {json.loads(line)["name"] for line in out.splitlines()} == {"bad", "good"}


def test_orphaned_temp_segments_are_removed_on_open(pixseek_env):
    root = _store_dir(pixseek_env)
    _fill(root, "c")
    orphan = root / "c" / "shard" / "temp_segments" / "segment_builder_x"
    orphan.mkdir(parents=True)
    (orphan / "data.bin").write_bytes(b"\0" * 4096)
    store = EdgeStore(root)
    assert store.get_collection("c").points == POINTS
    assert not orphan.exists()


def test_interrupted_index_build_is_resumed_by_the_next_ingest(cli, pixseek_env, tmp_path):
    from tests.conftest import COCO

    folder = tmp_path / "few"
    folder.mkdir()
    for src in sorted((COCO / "val2017").glob("*.jpg"))[:3]:
        (folder / src.name).write_bytes(src.read_bytes())
    code, out, err = cli("ingest", folder, "-c", "ix", "--json")
    assert code == 0 and json.loads(out)["index"] is None, err
    close_shards()
    meta_path = _store_dir(pixseek_env) / "ix" / "pixseek.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "index_build": "running"}))  # as if killed
    code, out, err = cli("ingest", folder, "-c", "ix", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["skipped"] == 3 and summary["index"] is not None, err
    close_shards()
    assert "index_build" not in json.loads(meta_path.read_text())


def test_kill_9_during_an_index_build_loses_nothing_and_the_build_runs_again(pixseek_env):
    """A real `pixseek collections optimize` killed with SIGKILL while it writes the HNSW
    segment: the next open removes the builder's temporary segment, every point is there and
    the collection says its build is unfinished; the next build completes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = _store_dir(pixseek_env)
    store = EdgeStore(root)
    store.create_collection("big", {"clip": 128}, {"roots": ["/photos"]})
    rng = np.random.default_rng(7)
    points = 30_000  # 15 MB of vectors: above the size Qdrant indexes at; a ~5 s build here
    for start in range(0, points, 3000):
        vectors = rng.normal(size=(3000, 128)).astype(np.float32)
        store.upsert(
            "big",
            [
                PointRecord(str(uuid.UUID(int=start + i + 1)), {"clip": vectors[i]}, {})
                for i in range(3000)
            ],
        )
    close_shards(root)
    temp = root / "big" / "shard" / "temp_segments"
    build = subprocess.Popen(
        [sys.executable, "-m", "pixseek", "collections", "optimize", "big"],
        env={**os.environ, **pixseek_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not (temp.is_dir() and any(temp.iterdir())):  # the builder's segment is being written
        assert build.poll() is None and time.monotonic() < deadline, "the build ended first"
        time.sleep(0.02)
    time.sleep(0.1)
    build.send_signal(signal.SIGKILL)
    assert build.wait(30) == -signal.SIGKILL
    assert any(temp.iterdir())  # what the killed builder left behind
    assert json.loads((root / "big" / "pixseek.json").read_text())["index_build"] == "running"

    info = EdgeStore(root).get_collection("big")  # a new process would do the same
    assert info.points == points and info.index_pending
    assert not temp.exists() or not any(temp.iterdir())
    close_shards(root)
    done = run_pixseek(["collections", "optimize", "big"], pixseek_env)
    assert done.returncode == 0, done.stderr
    assert f"{points} vectors indexed" in done.stdout
    meta = json.loads((root / "big" / "pixseek.json").read_text())
    assert "index_build" not in meta


def test_snapshot_and_restore(cli, two, tmp_path):
    code, out, err = cli("collections", "snapshot", "good", tmp_path)
    assert code == 0, err
    snapshot = tmp_path / "good.pixseek-snapshot.tar"
    assert snapshot.is_file()
    code, _, err = cli("collections", "drop", "good", "--yes")
    assert code == 0, err
    code, out, err = cli("collections", "restore", "good", snapshot)
    assert code == 0 and "5 points" in out, err
    code, out, err = cli("collections", "restore", "bad", snapshot)  # exists: asks, cannot
    assert code == 2 and "--yes" in err
    code, out, err = cli("collections", "restore", "bad", snapshot, "--yes")
    assert code == 0 and "5 points" in out, err
    (tmp_path / "junk.tar").write_bytes(b"junk")
    code, out, err = cli("collections", "restore", "other", tmp_path / "junk.tar")
    assert code == 2 and "not a readable pixseek snapshot" in err
    _one_line_error(err, "other") if "'other'" in err else None


def test_http_api_names_the_damaged_collection(two, pixseek_env):
    from tests.test_api import make_client

    DAMAGE["vectors truncated"](_segment(two, "bad"))
    with make_client(pixseek_env) as client:
        listed = {c["name"]: c for c in client.get("/collections").json()}
        assert listed["good"]["points"] == 5 and listed["good"]["error"] is None
        assert "collection 'bad' is damaged" in listed["bad"]["error"]
        response = client.get("/collections/bad")
        assert response.status_code == 503 and "damaged" in response.json()["detail"]
