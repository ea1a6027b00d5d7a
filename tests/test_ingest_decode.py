"""Decoding: damaged data anywhere rejects the image; the pixel limit is exactly the setting."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixseek.decode import ImageRejected, decode_image


def _damaged_png(path: Path) -> None:
    """A 400x400 PNG with 200 bytes zeroed in the middle of its compressed data (IDAT)."""
    noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT")
    length = int.from_bytes(data[start - 4 : start], "big")
    middle = start + 4 + length // 2
    data[middle : middle + 200] = bytes(200)
    path.write_bytes(bytes(data))
    with pytest.raises(OSError), Image.open(path) as image:  # Pillow itself refuses it
        image.load()


def test_damaged_png_is_reported_under_failed(cli, pixseek_env, tmp_path, monkeypatch):
    # In-process text search without the background ONNX export: that export's thread swaps
    # sys.stdout (torch.onnx) and leaves later CliRunner calls in this process printing nowhere.
    monkeypatch.setenv("PIXSEEK_TEXT_BACKEND", "torch")
    folder = tmp_path / "pngs"
    folder.mkdir()
    _damaged_png(folder / "damaged.png")
    Image.new("RGB", (40, 40), (1, 2, 3)).save(folder / "fine.png")
    code, out, err = cli("ingest", folder, "-c", "png", "--json")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["added"] == 1
    (failure,) = summary["failed"]
    assert failure["source"] == "damaged.png" and "cannot decode" in failure["reason"]
    code, out, _ = cli("search", "x", "-c", "png", "--json")
    assert [json.loads(line)["source"] for line in out.splitlines()] == ["fine.png"]


def test_pixel_limit_is_exactly_the_setting():
    # 9500 x 9500 = 90.25 MP: above Pillow's 89 MP bomb warning, far below a 500 MP setting.
    buffer = io.BytesIO()
    Image.new("L", (9500, 9500), 128).save(buffer, "JPEG")
    data = buffer.getvalue()
    assert decode_image(data, 500_000_000, 224).width == 9500
    assert decode_image(data, 9500 * 9500, 224).height == 9500
    with pytest.raises(ImageRejected, match="above the limit of 90249999"):
        decode_image(data, 9500 * 9500 - 1, 224)


def test_cli_honours_a_raised_pixel_limit(cli, pixseek_env, tmp_path, monkeypatch):
    folder = tmp_path / "big"
    folder.mkdir()
    Image.new("L", (9500, 9500), 128).save(folder / "big.jpg")
    monkeypatch.setenv("PIXSEEK_MAX_IMAGE_PIXELS", "500000000")
    code, out, err = cli("ingest", folder, "-c", "big", "--json")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["added"], summary["failed"]) == (1, [])
