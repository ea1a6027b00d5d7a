"""Nothing lost: every file location keeps its own point, path and labels, on both store backends.

Identical content is embedded once (later copies reuse the stored vectors), a re-ingest of one
root never changes what another root contributed, and old collections are migrated.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from pixseek.ingest.collection import PAYLOAD_SCHEMA, SCHEMA_KEY
from pixseek.ingest.labels import load_labels
from pixseek.ingest.pipeline import IngestOptions, run_ingest

from pixseek.store import PointRecord
from tests.conftest import COCO

JPEGS = sorted((COCO / "val2017").glob("*.jpg"))


@pytest.fixture(scope="module")
def embedders(tiny_clip_dir: Path):
    from pixseek.config import load_settings
    from pixseek.models.bundle import load_image_embedders

    settings = load_settings({"PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}"})
    return load_image_embedders(settings)


def _ingest(store, embedders, paths, labels: Path | None = None, **kwargs):
    options = IngestOptions(
        collection="loc", labels=load_labels(labels) if labels else None, batch_size=8, **kwargs
    )
    return run_ingest(store, embedders, [str(p) for p in paths], options)


def _points(store) -> dict[tuple[str, str], dict]:
    return {
        (Path(p.payload["root"]).name, p.payload["source"]): p.payload for p in store.scroll("loc")
    }


def _vectors(store) -> dict[str, np.ndarray]:
    ids = [p.id for p in store.scroll("loc", fields=["source"])]
    points = store.retrieve("loc", ids, with_vectors=True)
    return {p.payload["source"]: np.array(p.vectors["clip"]) for p in points}


def test_every_copy_is_kept_and_embedded_once(store, embedders, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy2(JPEGS[0], folder / "a.jpg")
    shutil.copy2(JPEGS[0], folder / "sub" / "copy.jpg")
    shutil.copy2(JPEGS[1], folder / "other.jpg")
    archive = tmp_path / "backup.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(JPEGS[0], arcname="old/a.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\na.jpg,Dog\nsub/copy.jpg,puppy\nother.jpg,cat\n")

    summary = _ingest(store, embedders, [folder, archive], labels)

    assert (summary.added, summary.duplicates, summary.failed) == (2, 2, [])
    named = {(d.source, d.same_as) for d in summary.duplicate_files}
    assert named == {
        (str(folder / "sub" / "copy.jpg"), str(folder / "a.jpg")),
        (f"{archive}:old/a.jpg", str(folder / "a.jpg")),
    }
    points = _points(store)
    assert set(points) == {
        ("photos", "a.jpg"),
        ("photos", "sub/copy.jpg"),
        ("photos", "other.jpg"),
        ("backup.tar", "old/a.jpg"),
    }
    assert points[("photos", "a.jpg")]["labels"] == ["Dog"]
    assert points[("photos", "sub/copy.jpg")]["labels"] == ["puppy"]
    assert points[("backup.tar", "old/a.jpg")]["labels"] == ["Dog"]  # matched by bare name
    copy = points[("photos", "sub/copy.jpg")]
    assert (copy["width"], copy["height"], copy["format"]) == (
        points[("photos", "a.jpg")]["width"],
        points[("photos", "a.jpg")]["height"],
        "JPEG",
    )
    vectors = _vectors(store)
    assert np.allclose(vectors["a.jpg"], vectors["sub/copy.jpg"])
    assert np.allclose(vectors["a.jpg"], vectors["old/a.jpg"])

    again = _ingest(store, embedders, [folder, archive], labels)
    assert (again.added, again.duplicates, again.skipped, again.updated) == (0, 0, 4, 0)


def test_reingest_of_one_root_keeps_what_another_root_gave(store, embedders, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    shutil.copy2(JPEGS[2], first / "x.jpg")
    shutil.copy2(JPEGS[2], second / "x.jpg")
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"filename": "x.jpg", "labels": ["tench"], "captions": ["a fish"]}\n')

    _ingest(store, embedders, [first], labels)
    summary = _ingest(store, embedders, [second])  # no --labels: must not wipe first's labels
    assert (summary.added, summary.duplicates) == (0, 1)
    points = _points(store)
    assert points[("first", "x.jpg")]["labels"] == ["tench"]
    assert points[("first", "x.jpg")]["captions"] == ["a fish"]
    assert points[("second", "x.jpg")]["labels"] == []

    relabel = tmp_path / "relabel.csv"
    relabel.write_text("filename,label\nx.jpg,carp\n")
    _ingest(store, embedders, [second], relabel)
    points = _points(store)
    assert points[("first", "x.jpg")]["labels"] == ["tench"]
    assert points[("second", "x.jpg")]["labels"] == ["carp"]
    assert not points[("second", "x.jpg")].get("captions")  # the new sidecar has none

    # A changed file at one location replaces only that location's point.
    shutil.copy2(JPEGS[3], second / "x.jpg")
    summary = _ingest(store, embedders, [second])
    assert (summary.added, summary.replaced) == (1, 1)
    points = _points(store)
    assert len(points) == 2
    assert points[("second", "x.jpg")]["labels"] == ["carp"]  # the location keeps its labels
    assert points[("first", "x.jpg")]["sha256"] != points[("second", "x.jpg")]["sha256"]


def test_sidecar_that_matches_few_files_warns(store, embedders, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for i, src in enumerate(JPEGS[:4]):
        shutil.copy2(src, folder / f"img{i}.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\nimg0.jpg,dog\nelsewhere/nope.jpg,cat\nmissing.jpg,cow\n")
    summary = _ingest(store, embedders, [folder], labels)
    (warning,) = summary.warnings
    assert "matched 1 of 4 files (25%)" in warning
    assert "'elsewhere/nope.jpg'" in warning or "'missing.jpg'" in warning

    good = tmp_path / "good.csv"
    good.write_text("filename,label\n" + "".join(f"img{i}.jpg,dog\n" for i in range(4)))
    assert _ingest(store, embedders, [folder], good).warnings == []


def test_schema_1_collection_is_migrated(store, embedders, tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy2(JPEGS[4], folder / "one.jpg")
    store.create_collection("loc", embedders.vector_sizes, embedders.metadata)  # schema 1
    size = embedders.vector_sizes["clip"]
    store.upsert(
        "loc",
        [
            PointRecord(
                "00000000-0000-0000-0000-000000000001",
                {"clip": [1.0] + [0.0] * (size - 1)},
                {"root": "/gone", "source": "z.jpg", "labels": ["Shih-Tzu"], "sha256": "ab"},
            )
        ],
    )
    summary = _ingest(store, embedders, [folder])
    assert any("payload schema 1 -> 2" in w for w in summary.warnings)
    info = store.get_collection("loc")
    assert info.metadata[SCHEMA_KEY] == PAYLOAD_SCHEMA
    assert info.metadata["models"] == embedders.metadata["models"]
    points = _points(store)
    assert points[("gone", "z.jpg")]["label_keys"] == ["shih-tzu"]
    assert points[("old", "one.jpg")]["label_keys"] == []
    assert not any("schema" in w for w in _ingest(store, embedders, [folder]).warnings)
