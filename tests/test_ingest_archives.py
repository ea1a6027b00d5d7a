"""Archives inside ingested folders are walked (nested archives to a bounded depth), never
ignored without a word; their members are read back for thumbnails like any other image."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

from pixseek.media import read_image_bytes, split_members
from tests.conftest import COCO

JPEGS = sorted((COCO / "train2017").glob("*.jpg"))


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _build(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    shutil.copy2(JPEGS[0], folder / "plain.jpg")
    inner = _zip_bytes({"deep/b.jpg": JPEGS[2].read_bytes()})
    too_deep = _zip_bytes({"l3.zip": _zip_bytes({"x.jpg": JPEGS[3].read_bytes()})})
    with tarfile.open(folder / "sub" / "set.tar", "w") as tar:
        tar.add(JPEGS[1], arcname="a.jpg")
        for name, data in (("inner.zip", inner), ("l2.zip", too_deep)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")


def test_archives_inside_folders_are_walked(cli, pixseek_env, tmp_path, monkeypatch):
    # In-process text search without the background ONNX export: that export's thread swaps
    # sys.stdout (torch.onnx) and leaves later CliRunner calls in this process printing nowhere.
    monkeypatch.setenv("PIXSEEK_TEXT_BACKEND", "torch")
    folder = tmp_path / "mixed"
    _build(folder)
    code, out, err = cli("ingest", folder, "-c", "mix", "--json")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["added"] == 3
    failures = {f["source"]: f["reason"] for f in summary["failed"]}
    assert set(failures) == {"broken.zip", "sub/set.tar:l2.zip:l3.zip"}
    assert "cannot open archive" in failures["broken.zip"]
    assert "nested deeper" in failures["sub/set.tar:l2.zip:l3.zip"]

    from pixseek.config import load_settings
    from pixseek.store import open_store

    points = {p.payload["source"]: p.payload for p in open_store(load_settings()).scroll("mix")}
    assert set(points) == {"plain.jpg", "sub/set.tar:a.jpg", "sub/set.tar:inner.zip:deep/b.jpg"}
    assert read_image_bytes(points["sub/set.tar:a.jpg"]) == JPEGS[1].read_bytes()
    assert read_image_bytes(points["sub/set.tar:inner.zip:deep/b.jpg"]) == JPEGS[2].read_bytes()

    code, out, _ = cli("ingest", folder, "-c", "mix", "--json")
    again = json.loads(out.strip().splitlines()[-1])
    assert (again["added"], again["skipped"]) == (0, 3)
    code, out, _ = cli("search", "x", "-c", "mix", "-w", "source~set.tar:", "--json")
    assert {json.loads(line)["source"] for line in out.splitlines()} == {
        "sub/set.tar:a.jpg",
        "sub/set.tar:inner.zip:deep/b.jpg",
    }


def test_split_members_keeps_other_colons():
    assert split_members("a/set.tar:inner.zip:x.jpg") == ["a/set.tar", "inner.zip", "x.jpg"]
    assert split_members("12:30 photo.jpg") == ["12:30 photo.jpg"]
    assert split_members("x.tgz:b:c.jpg") == ["x.tgz", "b:c.jpg"]
