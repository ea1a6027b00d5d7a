"""Result rendering: JSON lines, the table, and the HTML contact sheet's thumbnails from folders,
zip and tar archives."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import zipfile

from PIL import Image
from pixseek.search.render import contact_sheet, json_lines, table, thumbnail_data_uri

from pixseek.media import read_image_bytes
from pixseek.store.base import Hit


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG")
    return out.getvalue()


def test_images_are_read_from_folders_and_archives(tmp_path):
    data = _jpeg((200, 10, 10))
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "a.jpg").write_bytes(data)
    with zipfile.ZipFile(tmp_path / "pics.zip", "w") as archive:
        archive.writestr("inner/a.jpg", data)
    with tarfile.open(tmp_path / "pics.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("inner/a.jpg")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    for root, source in [
        (tmp_path / "dir", "sub/a.jpg"),
        (tmp_path / "pics.zip", "inner/a.jpg"),
        (tmp_path / "pics.tar.gz", "inner/a.jpg"),
    ]:
        payload = {"root": str(root), "source": source}
        assert read_image_bytes(payload) == data
        uri = thumbnail_data_uri(payload, size=32)
        assert uri is not None and uri.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumb:
            assert max(thumb.size) == 32
    for missing in [
        {"root": str(tmp_path / "dir"), "source": "nope.jpg"},
        {"root": str(tmp_path / "pics.zip"), "source": "nope.jpg"},
        {"root": str(tmp_path / "pics.tar.gz"), "source": "nope.jpg"},
        {"root": str(tmp_path / "gone.zip"), "source": "a.jpg"},
        {},
    ]:
        assert read_image_bytes(missing) is None
        assert thumbnail_data_uri(missing) is None


def test_contact_sheet_escapes_and_marks_missing_images(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(_jpeg((0, 200, 0)))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    hits = [
        Hit("id-1", 0.91234, {"root": str(tmp_path), "source": "ok.jpg", "labels": ["dog"]}),
        Hit("id-2", 0.5, {"root": str(tmp_path), "source": "<script>x</script>.jpg"}),
        Hit("id-3", 0.4, {"root": str(tmp_path), "source": "broken.jpg", "labels": ["<b>"]}),
    ]
    page = contact_sheet(hits, "pixseek: <dog>", "collection c", offset=10)
    assert page.count("data:image/jpeg;base64,") == 1
    assert page.count("image unavailable") == 2
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page
    assert "#11 · 0.9123" in page and "#13" in page
    assert "<title>pixseek: &lt;dog&gt;</title>" in page
    assert "No results." in contact_sheet([], "empty")


def test_json_lines_and_table():
    hits = [
        Hit("a", 0.123456789, {"source": "x/1.jpg", "labels": ["dog", "cat"], "taken": None}),
        Hit("b", -0.5, {"source": "y/" + "long" * 40 + ".jpg", "labels": []}),
    ]
    rows = [json.loads(line) for line in json_lines(hits, offset=5).splitlines()]
    assert rows[0] == {
        "rank": 6,
        "id": "a",
        "score": 0.123456789,  # full precision: never rounded in JSON
        "source": "x/1.jpg",
        "payload": hits[0].payload,
    }
    assert rows[1]["rank"] == 7
    text = table(hits, width=80).splitlines()
    assert text[0].split() == ["rank", "score", "source", "labels"]
    assert text[1].split()[:3] == ["1", "0.1235", "x/1.jpg"] and text[1].endswith("dog, cat")
    assert "…" in text[2] and text[2].split()[1] == "-0.5000"
    assert all(len(line) <= 80 for line in text)
