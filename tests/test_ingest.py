"""Ingest end to end through the CLI, on real COCO / Imagenette images and a tiny random CLIP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import COCO, IMAGENETTE


def _points(env: dict, collection: str) -> list:
    from pixseek.config import load_settings
    from pixseek.store import open_store

    store = open_store(load_settings(env))
    return list(store.scroll(collection))


def _summary(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_coco_ingest_labels_and_idempotent_rerun(cli, pixseek_env):
    code, out, err = cli("ingest", COCO, "--labels", COCO / "labels.jsonl", "-c", "coco", "--json")
    assert code == 0, err
    summary = _summary(out)
    assert summary["added"] == 239 and summary["failed"] == [] and summary["duplicates"] == 0

    expected = {}
    for line in (COCO / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        expected[row["filename"]] = row
    points = _points(pixseek_env, "coco")
    assert len(points) == 239
    by_source = {p.payload["source"]: p.payload for p in points}
    assert set(by_source) == set(expected)
    for source, row in expected.items():
        payload = by_source[source]
        assert payload["labels"] == (row["labels"] or [])
        assert payload["captions"] == row["captions"]
        assert payload["meta"]["image_id"] == row["image_id"]
        with Image.open(COCO / source) as image:
            assert (payload["width"], payload["height"]) == image.size
        assert payload["format"] == "JPEG"
        assert payload["bytes"] == (COCO / source).stat().st_size
        assert len(payload["sha256"]) == 64

    code, out, _ = cli("ingest", COCO, "--labels", COCO / "labels.jsonl", "-c", "coco", "--json")
    again = _summary(out)
    assert code == 0 and again["added"] == 0 and again["skipped"] == 239 and again["updated"] == 0

    code, out, _ = cli("collections", "--json")
    listed = json.loads(out)
    assert (listed["name"], listed["points"], listed["vectors"]["clip"]) == ("coco", 239, 32)


def test_changed_deleted_and_new_files_with_prune(cli, pixseek_env, tmp_path):
    archive = tmp_path / "photos"
    (archive / "a").mkdir(parents=True)
    sources = sorted((COCO / "train2017").glob("*.jpg"))[:6]
    for src in sources:
        shutil.copy2(src, archive / "a" / src.name)
    code, out, _ = cli("ingest", archive, "-c", "p", "--labels-from-folders", "--json")
    assert _summary(out)["added"] == 6
    assert {p.payload["labels"][0] for p in _points(pixseek_env, "p")} == {"a"}

    changed, deleted = archive / "a" / sources[0].name, archive / "a" / sources[1].name
    Image.new("RGB", (64, 48), (10, 200, 30)).save(changed, "JPEG")
    deleted.unlink()
    shutil.copy2(sorted((COCO / "val2017").glob("*.jpg"))[0], archive / "a" / "new.jpg")

    code, out, _ = cli("ingest", archive, "-c", "p", "--labels-from-folders", "--json")
    summary = _summary(out)
    assert (summary["added"], summary["replaced"], summary["pruned"]) == (2, 1, 0)
    assert len(_points(pixseek_env, "p")) == 7  # the deleted file's point stays without --prune

    code, out, _ = cli("ingest", archive, "-c", "p", "--labels-from-folders", "--prune", "--json")
    summary = _summary(out)
    assert (summary["added"], summary["pruned"], summary["skipped"]) == (0, 1, 6)
    points = _points(pixseek_env, "p")
    assert sorted(p.payload["source"] for p in points) == sorted(
        f"a/{p.name}" for p in archive.joinpath("a").iterdir()
    )
    changed_point = next(p for p in points if p.payload["source"] == f"a/{changed.name}")
    assert (changed_point.payload["width"], changed_point.payload["height"]) == (64, 48)


def test_relabel_updates_payload_without_reembedding(cli, pixseek_env, tmp_path):
    folder = tmp_path / "relabel"
    folder.mkdir()
    shutil.copy2(sorted((COCO / "val2017").glob("*.jpg"))[3], folder / "one.jpg")
    code, out, _ = cli("ingest", folder, "-c", "d", "--json")
    assert _summary(out)["added"] == 1
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\none.jpg,Sheep|dog\n")
    code, out, _ = cli("ingest", folder, "-c", "d", "--labels", labels, "--json")
    summary = _summary(out)
    assert (summary["added"], summary["updated"]) == (0, 1)
    (point,) = _points(pixseek_env, "d")
    assert point.payload["labels"] == ["Sheep", "dog"]
    assert point.payload["label_keys"] == ["dog", "sheep"]


def test_imagenette_csv_labels_from_subfolder(cli, pixseek_env, tmp_path):
    wnid_dir = sorted((IMAGENETTE / "val").iterdir())[0]
    code, out, err = cli(
        "ingest", wnid_dir, "-c", "inet", "--labels", IMAGENETTE / "labels.csv", "--json"
    )
    assert code == 0, err
    points = _points(pixseek_env, "inet")
    assert len(points) == len(list(wnid_dir.glob("*.JPEG")))
    assert {tuple(p.payload["labels"]) for p in points} == {("tench",)}
    assert points[0].payload["meta"]["wnid"] == wnid_dir.name


def test_tar_and_zip_archives(cli, pixseek_env, tmp_path):
    images = sorted((COCO / "train2017").glob("*.jpg"))[:5]
    tar_path, zip_path = tmp_path / "set.tar.gz", tmp_path / "set.zip"
    with tarfile.open(tar_path, "w:gz") as tar:
        for image in images[:3]:
            tar.add(image, arcname=f"inner/{image.name}")
    with zipfile.ZipFile(zip_path, "w") as archive:
        for image in images[3:]:
            archive.write(image, arcname=f"z/{image.name}")
        archive.writestr("z/readme.txt", "not an image")
    code, out, err = cli("ingest", tar_path, zip_path, "-c", "arc", "--json")
    assert code == 0, err
    assert _summary(out)["added"] == 5
    points = _points(pixseek_env, "arc")
    assert {p.payload["root"] for p in points} == {str(tar_path), str(zip_path)}
    assert {p.payload["source"] for p in points} == {f"inner/{i.name}" for i in images[:3]} | {
        f"z/{i.name}" for i in images[3:]
    }
    code, out, _ = cli("ingest", tar_path, zip_path, "-c", "arc", "--json")
    assert _summary(out)["skipped"] == 5


def test_bad_arguments_are_one_line_errors(cli, pixseek_env, tmp_path):
    code, _, err = cli("ingest", tmp_path / "missing", "-c", "x")
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    labels = tmp_path / "labels.xml"
    labels.write_text("<x/>")
    code, _, err = cli("ingest", COCO, "-c", "x", "--labels", labels)
    assert code == 2 and err.count("\n") == 1 and "unknown format" in err
    code, _, err = cli("ingest", COCO, "-c", "bad/name")
    assert code == 2 and "invalid collection name" in err
    code, _, err = cli("collections", "drop", "nope", "--yes")
    assert code == 2 and "does not exist" in err


def test_unusable_model_is_a_one_line_error(cli, pixseek_env, tmp_path, monkeypatch):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    monkeypatch.setenv("PIXSEEK_CLIP_MODEL", f"local-dir:{empty}")
    code, _, err = cli("ingest", COCO / "train2017", "-c", "x")
    assert code == 2 and err.count("\n") == 1 and "open_clip_config.json" in err
    monkeypatch.setenv("PIXSEEK_CLIP_MODEL", "ViT-B-32")
    monkeypatch.setenv("PIXSEEK_CLIP_PRETRAINED", "laion2b_s34b_b79k")
    code, _, err = cli("ingest", COCO / "train2017", "-c", "x")
    assert code == 2 and err.count("\n") == 1 and "cannot load CLIP model" in err
    # Nothing was created by the failed runs.
    code, out, _ = cli("collections", "--json")
    assert out.strip() == ""


def test_drop_collection(cli, pixseek_env):
    cli("ingest", COCO / "train2017", "-c", "gone", "--json")
    code, out, _ = cli("collections", "drop", "gone", "--yes")
    assert code == 0 and "dropped" in out
    code, out, _ = cli("collections", "--json")
    assert out.strip() == ""


def test_index_is_built_after_large_changing_runs(cli, pixseek_env, monkeypatch):
    import pixseek.ingest.pipeline

    source = COCO / "train2017"
    code, out, err = cli("ingest", source, "-c", "small", "--json")
    assert code == 0 and _summary(out)["index"] is None  # below the automatic threshold
    monkeypatch.setattr(pixseek.ingest.pipeline, "AUTO_OPTIMIZE_POINTS", 10)
    code, out, _ = cli("ingest", COCO / "val2017", "-c", "small", "--json")
    summary = _summary(out)
    points = summary["index"]["points"]
    assert summary["added"] > 0 and points == len(_points(pixseek_env, "small"))
    assert summary["optimize_seconds"] > 0
    code, out, _ = cli("ingest", COCO / "val2017", "-c", "small", "--json")
    assert _summary(out)["index"] is None  # nothing changed: nothing to index
    code, out, _ = cli("ingest", source, "-c", "small", "--optimize")
    # (tiny vectors stay below Qdrant's indexing threshold; sparse keyword vectors count as indexed)
    assert code == 0 and " vectors indexed (HNSW)" in out and f"of {points} points" in out
    code, out, _ = cli("collections", "optimize", "small")
    assert code == 0 and out.startswith("small: ") and " vectors indexed (HNSW) in " in out
    code, _, err = cli("collections", "optimize", "nope")
    assert code == 2 and err.startswith("pixseek: error: collection 'nope' does not exist")


def test_dino_second_vector(cli, pixseek_env, tiny_dino_dir, monkeypatch):
    monkeypatch.setenv("PIXSEEK_DINO_MODEL", str(tiny_dino_dir))
    code, out, err = cli("ingest", COCO / "train2017", "-c", "two", "--json")
    assert code == 0, err
    code, out, _ = cli("collections", "--json")
    vectors = json.loads(out)["vectors"]
    assert (vectors["clip"], vectors["dino"]) == (32, 32)
    monkeypatch.delenv("PIXSEEK_DINO_MODEL")
    code, _, err = cli("ingest", COCO / "train2017", "-c", "two")
    assert code == 2 and "PIXSEEK_DINO_MODEL" in err


def _spawn_ingest(env: dict, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pixseek", "ingest", str(folder), "-c", "k", "--batch-size", "8"],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def _kill_when_progress(proc: subprocess.Popen, fraction: float) -> int:
    """SIGKILL the ingest once its progress log reaches `fraction`; returns files done."""
    deadline = time.monotonic() + 300
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("ingest: "):
            done, total = (int(x) for x in line.split()[1].split("/"))
            if done >= fraction * total:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return done
        assert time.monotonic() < deadline, "ingest never reported progress"
    pytest.fail(f"ingest finished before reaching {fraction:.0%}: {proc.wait()}")


def test_kill_minus_9_mid_ingest_then_resume(pixseek_env, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted((IMAGENETTE / "val").glob("*/*.JPEG"))[::4][:800]
    for src in sources:
        shutil.copy2(src, folder / src.name)
    env = dict(pixseek_env)
    killed_at = [_kill_when_progress(_spawn_ingest(env, folder), f) for f in (0.2, 0.6)]
    assert killed_at[0] < len(sources) and killed_at[1] < len(sources)
    partial = len(_points(env, "k"))
    assert 0 < partial < len(sources)
    from pixseek.store.edge import _close_all

    _close_all()  # release the shard so the resumed run (another process) can open it
    final = subprocess.run(
        [sys.executable, "-m", "pixseek", "ingest", str(folder), "-c", "k", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert final.returncode == 0, final.stderr
    summary = _summary(final.stdout)
    assert summary["skipped"] >= partial - 8 and summary["failed"] == []
    points = _points(env, "k")
    sources_stored = [p.payload["source"] for p in points]
    assert len(points) == len(sources)
    assert sorted(sources_stored) == sorted(src.name for src in sources)
    assert len({p.id for p in points}) == len(points)
