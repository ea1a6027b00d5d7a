"""`pixseek duplicates` end to end: real images, real ingest (tiny random CLIP), both backends.

Ingest stores the perceptual hash; a collection made before that gets it from --update-hashes.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import COCO, json_lines

ORIGINALS = sorted((COCO / "val2017").glob("*.jpg"))[:4]


@pytest.fixture(params=["edge", "server"])
def backend(request, pixseek_env, monkeypatch, tmp_path) -> str:
    if request.param == "server":
        monkeypatch.setenv("PIXSEEK_QDRANT_URL", f"local:{tmp_path / 'qdrant'}")
    return request.param


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return make_archive(tmp_path)


def make_archive(tmp_path: Path) -> Path:
    """4 distinct photos, a half-size re-encode of the first, a 3% crop of the second (8 bits away), and a
    byte-identical copy of the third in another folder."""
    folder = tmp_path / "photos"
    (folder / "copies").mkdir(parents=True)
    for i, path in enumerate(ORIGINALS):
        shutil.copy(path, folder / f"p{i}.jpg")
    first = Image.open(ORIGINALS[0]).convert("RGB")
    first.resize((first.width // 2, first.height // 2)).save(folder / "p0_half.jpg", quality=50)
    second = Image.open(ORIGINALS[1]).convert("RGB")
    w, h = second.size
    second.crop((0, 0, int(w * 0.97), int(h * 0.97))).save(folder / "p1_crop.jpg", quality=90)
    shutil.copy(ORIGINALS[2], folder / "copies" / "p2.jpg")
    return folder


def sources(groups: list[dict]) -> list[set[str]]:
    return sorted(({p["source"] for p in g["points"]} for g in groups), key=sorted)


def test_tiers_json_and_html(cli, backend, archive, tmp_path):
    code, _, err = cli("ingest", archive, "-c", "photos")
    assert code == 0, err
    code, out, err = cli("duplicates", "-c", "photos", "--json", "--no-confirm")
    assert code == 0, err
    near = json_lines(out)
    assert sources(near) == [
        {"copies/p2.jpg", "p2.jpg"},
        {"p0.jpg", "p0_half.jpg"},
        {"p1.jpg", "p1_crop.jpg"},
    ]
    half = next(g for g in near if len(g["points"]) == 2 and "p0_half.jpg" in sources([g])[0])
    assert half["tier"] == "near" and half["size"] == 2
    assert half["points"][0]["source"] == "p0.jpg" and half["keep"] == half["points"][0]["id"]
    assert half["reason"].startswith("largest")
    assert {"id", "source", "width", "height", "bytes", "distance"} <= set(half["points"][1])

    code, out, _ = cli("duplicates", "-c", "photos", "--tier", "exact", "--json")
    assert sources(json_lines(out)) == [{"copies/p2.jpg", "p2.jpg"}]

    page = tmp_path / "review.html"
    code, out, err = cli("duplicates", "-c", "photos", "--no-confirm", "--html", page)
    assert code == 0 and "3 near group(s)" in out
    html = page.read_text()
    assert html.count("<section>") == 3 and html.count("data:image/jpeg;base64,") == 6
    assert html.count('class="badge">keep') == 3

    code, out, _ = cli("duplicates", "-c", "photos", "--threshold", "0", "--json", "--no-confirm")
    assert {"p2.jpg", "copies/p2.jpg"} in sources(json_lines(out))
    assert all(len(g["points"]) == 2 for g in json_lines(out))


def test_update_hashes_gives_an_old_collection_its_hashes(cli, backend, archive, pixseek_env):
    from pixseek.config import load_settings
    from pixseek.store import PointRecord, open_store

    store = open_store(load_settings())
    store.create_collection("old", {"clip": 4}, {})
    files = sorted(p for p in archive.rglob("*.jpg"))
    store.upsert(
        "old",
        [
            PointRecord(
                str(uuid.uuid4()),
                {"clip": [1.0, 0.0, 0.0, float(i)]},
                {"root": str(archive), "source": str(p.relative_to(archive))},
            )
            for i, p in enumerate(files)
        ],
    )
    store.close()
    code, _, err = cli("duplicates", "-c", "old")
    assert code != 0 and "--update-hashes" in err and "Traceback" not in err

    code, out, err = cli("duplicates", "-c", "old", "--update-hashes", "--no-confirm", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["vector_added"] is True and lines[0]["hashed"] == len(files)
    assert len(lines[1:]) == 3  # the three groups
    code, out, err = cli("enrich", "hashes", "-c", "old", "--json")  # the same pass
    assert code == 0, err
    again = json.loads(out.splitlines()[0])
    assert again["vector_added"] is False and again["hashed"] == 0  # incremental
    code, out, _ = cli("collections", "--json")
    assert json_lines(out)[0]["vectors"]["phash"] == 64
