"""Hostile and unusual inputs: each bad file is reported and skipped, the rest is ingested."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import COCO


def _exif_jpeg(path: Path) -> None:
    image = Image.new("RGB", (40, 20), (200, 50, 50))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 40x20, shown 20x40
    exif[271] = "Canon"
    exif[272] = "EOS 5D"
    exif.get_ifd(0x8769)[36867] = "2019:07:14 10:30:00"
    image.save(path, "JPEG", exif=exif)


def _build_archive(root: Path) -> tuple[set[str], dict[str, str]]:
    """Returns (sources expected to be ingested, {source: reason fragment} expected to fail)."""
    root.mkdir()
    real = sorted((COCO / "train2017").glob("*.jpg"))[0].read_bytes()
    good: set[str] = set()

    def keep(name: str, writer) -> None:
        writer(root / name)
        good.add(name)

    keep("café 北京 😀.jpg", lambda p: p.write_bytes(real))
    keep('quote\'s "x" & spaces  .jpg', lambda p: Image.new("L", (30, 30), 90).save(p, "JPEG"))
    keep("new\nline.jpg", lambda p: Image.new("RGB", (30, 30), (1, 2, 3)).save(p, "JPEG"))
    keep("rotated.jpg", _exif_jpeg)
    keep("alpha.png", lambda p: Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(p))
    keep(
        "deep16.png",
        lambda p: Image.fromarray(np.full((24, 24), 40000, dtype=np.uint16)).save(p),
    )
    keep("cmyk.jpg", lambda p: Image.new("CMYK", (24, 24), (0, 128, 0, 0)).save(p, "JPEG"))
    keep("pic.tiff", lambda p: Image.new("RGB", (24, 24), (5, 5, 5)).save(p, "TIFF"))
    keep("pic.bmp", lambda p: Image.new("RGB", (24, 24), (6, 6, 6)).save(p, "BMP"))
    keep("pic.webp", lambda p: Image.new("RGB", (24, 24), (7, 7, 7)).save(p, "WEBP"))

    def animated(path: Path) -> None:
        frames = [Image.new("P", (20, 20), i) for i in (1, 2)]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)

    keep("anim.gif", animated)
    (root / "sub").mkdir()
    keep("sub/link-to-real.jpg", lambda p: p.symlink_to(root / "café 北京 😀.jpg"))

    bad = {
        "zero.jpg": "empty file",
        "truncated.jpg": "cannot decode",
        "text.png": "not an image",
        "bomb.png": "pixels",
        "large.png": "above the limit",
        "self.jpg": "symlink loop",
        "broken.jpg": "cannot read",
        "sub/loop": "symlink loop",
    }
    (root / "zero.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(real[: len(real) // 2])
    (root / "text.png").write_text("definitely not a PNG")
    Image.new("1", (15000, 15000)).save(root / "bomb.png")
    Image.new("RGB", (1200, 1000), (9, 9, 9)).save(root / "large.png")
    (root / "self.jpg").symlink_to(root / "self.jpg")
    (root / "broken.jpg").symlink_to(root / "nowhere.jpg")
    (root / "sub" / "loop").symlink_to(root)
    (root / "notes.txt").write_text("ignored: not an image extension")
    os.close(os.open(os.fsencode(root) + b"/bad\xff.jpg", os.O_CREAT | os.O_WRONLY))
    bad["bad\ufffd.jpg"] = "not valid UTF-8"
    return good, bad


def test_hostile_inputs_are_reported_and_the_rest_ingested(cli, pixseek_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PIXSEEK_MAX_IMAGE_PIXELS", "1000000")
    root = tmp_path / "hostile"
    good, bad = _build_archive(root)

    code, out, err = cli("ingest", root, "-c", "h", "--json")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    failures = {f["source"]: f["reason"] for f in summary["failed"]}
    assert set(failures) == set(bad), failures
    for source, fragment in bad.items():
        assert fragment in failures[source], (source, failures[source])
    assert summary["added"] + summary["duplicates"] == len(good)

    from pixseek.config import load_settings
    from pixseek.store import open_store

    points = list(open_store(load_settings()).scroll("h"))
    stored = {p.payload["source"]: p.payload for p in points}
    assert set(stored) | {"sub/link-to-real.jpg"} == good  # the link duplicates café...jpg
    rotated = stored["rotated.jpg"]
    assert (rotated["width"], rotated["height"]) == (20, 40)
    assert rotated["taken"] == "2019-07-14T10:30:00Z"
    assert rotated["camera"] == "Canon EOS 5D"
    assert stored["anim.gif"]["format"] == "GIF"

    # A second run changes nothing and still reports the same failures.
    code, out, _ = cli("ingest", root, "-c", "h", "--json")
    again = json.loads(out.strip().splitlines()[-1])
    assert again["added"] == 0 and len(again["failed"]) == len(bad)
    assert len(list(open_store(load_settings()).scroll("h"))) == len(points)
