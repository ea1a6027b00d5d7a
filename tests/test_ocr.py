"""OCR with the real RapidOCR models (offline, in the wheel) on generated images, and the
`pixseek enrich ocr` pass: incremental, resumable after kill -9, searchable afterwards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from pixseek.ingest.enrich import OcrPool
from pixseek.ingest.ocr import ENGINE_ID, SPACE_PROB, RapidOcrEngine, _decode, bounded

from tests.conftest import COCO, run_pixseek

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
PHOTOS = sorted((COCO / "val2017").glob("*.jpg"))


def render(photo: Path | None, lines: list[tuple[str, int, float]], size=(640, 480)) -> Image.Image:
    """A real photo (or flat grey) with (text, pixel size, rotation) lines drawn on it."""
    image = Image.open(photo).convert("RGB") if photo else Image.new("RGB", size, (128, 128, 128))
    y = 20
    for text, px, angle in lines:
        font = ImageFont.truetype(FONT, px)
        left, top, right, bottom = font.getbbox(text)
        mask = Image.new("L", (right - left + 20, bottom - top + 20), 0)
        ImageDraw.Draw(mask).text((10 - left, 10 - top), text, font=font, fill=255)
        mask = mask.rotate(angle, expand=True)
        plate = Image.new("RGB", mask.size, (20, 20, 20))  # dark plate, white letters: a sign
        image.paste(plate, (20, y))
        image.paste((255, 255, 255), (20, y), mask)
        y += mask.height + 20
    return image


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine(threads=1, max_side=1600)


def words(text: str) -> set[str]:
    return {w.strip(".,:;!-").lower() for w in text.split()}


def test_reads_words_on_real_photos(engine):
    image = render(PHOTOS[0], [("HARBOUR", 40, 0), ("Gate 12", 28, 0)])
    result = engine.read(image)
    assert {"harbour", "gate", "12"} <= words(result.text), result.text
    line = result.lines[0]
    assert 0.5 <= line.confidence <= 1 and len(line.box) == 4
    assert all(0 <= x <= image.width and 0 <= y <= image.height for x, y in line.box)
    payload = result.payload()
    assert payload["ocr_engine"] == ENGINE_ID and payload["ocr_lines"][0]["text"] == line.text


def test_rotated_text_and_an_image_without_text(engine):
    rotated = engine.read(render(PHOTOS[1], [("LANTERN", 32, 12.0)]))
    assert "lantern" in words(rotated.text), rotated.text
    blank = engine.read(render(None, []))
    assert blank.lines == [] and blank.error is None
    assert blank.payload()["ocr"] == ""


def test_huge_images_are_scaled_down_first(engine):
    huge = render(None, [("MERIDIAN", 220, 0)], size=(6000, 4000))
    small, scale = bounded(huge, 1600)
    assert max(small.size) == 1600 and scale == pytest.approx(1600 / 6000)
    result = engine.read(huge)
    assert "meridian" in words(result.text), result.text
    # Boxes are in the image's own pixels: the word spans about 1,290 of them (345 scaled).
    assert max(x for line in result.lines for x, _ in line.box) > 1000


def _on_photo(photo: Path, text: str, font: str, px: int, angle: float, gap: float = 0.0):
    """Black letters straight on the photo (no plate), rotated; `gap` (in em) puts the words
    closer together than the font's own space when > 0."""
    image = (
        Image.open(photo).convert("RGB") if photo else Image.new("RGB", (520, 140), (60, 90, 120))
    )
    face = ImageFont.truetype(font, px)
    ink = (10, 10, 10) if photo else (240, 240, 240)
    if gap:
        draw, x = ImageDraw.Draw(image), 20.0
        for word in text.split():
            draw.text((x, 50), word, font=face, fill=ink)
            x += face.getlength(word) + gap * px
        return image
    left, top, right, bottom = face.getbbox(text)
    mask = Image.new("L", (right - left + 20, bottom - top + 20), 0)
    ImageDraw.Draw(mask).text((10 - left, 10 - top), text, font=face, fill=255)
    mask = mask.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    image.paste(ink, (40, 60), mask)
    return image


def _rapidocr_alone(image: Image.Image) -> str:
    """RapidOCR's own pipeline with pixseek's earlier settings (one detection at 1x)."""
    import numpy as np
    from rapidocr_onnxruntime import RapidOCR

    alone = RapidOCR(
        intra_op_num_threads=1, det_limit_type="max", det_limit_side_len=1600, det_unclip_ratio=2.0
    )
    raw, _ = alone(np.asarray(image)[:, :, ::-1])
    return "\n".join(text for _, text, _ in raw or [])


def test_second_detection_scale_finds_what_one_pass_misses(engine):
    serif = "/usr/share/fonts/truetype/liberation/LiberationSerif-Bold.ttf"
    quill = _on_photo(PHOTOS[0], "quill", serif, 60, -6.0)
    assert "quill" not in words(_rapidocr_alone(quill))  # 1x detection finds nothing there
    assert "quill" in words(engine.read(quill).text)
    zephyr = _on_photo(PHOTOS[3], "zephyr", serif, 28, -14.0)
    assert "zephyr" in words(engine.read(zephyr).text)  # 1x alone clips it: "zeph"


def test_words_set_close_together_are_split(engine):
    image = _on_photo(
        None, "harbour gate", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 24, 0, 0.12
    )
    assert "harbourgate" in words(_rapidocr_alone(image))  # a blank wins the gap's columns
    assert {"harbour", "gate"} <= words(engine.read(image).text)


def test_decoding_puts_a_space_where_the_space_class_is_likely():
    import numpy as np

    characters = ["blank", "a", "b", " "]
    probs = np.zeros((6, 4), dtype=np.float32)
    for column, index in enumerate([1, 0, 0, 2, 0, 2]):  # a _ _ b _ b
        probs[column, index] = 0.9
    assert _decode(probs, characters, 3)[0] == "abb"
    probs[2, 3] = SPACE_PROB  # a blank still wins column 2, but the space class is likely
    text, confidence = _decode(probs, characters, 3)
    assert text == "a bb" and confidence == pytest.approx(0.9)
    probs[4, 3] = SPACE_PROB / 2
    assert _decode(probs, characters, 3)[0] == "a bb"


def test_onnx_sessions_use_the_given_thread_count(engine):
    rapid = engine._engine()
    sessions = [rapid.text_det.infer, rapid.text_cls.infer, rapid.text_rec.session]
    assert [s.session.get_session_options().intra_op_num_threads for s in sessions] == [1, 1, 1]


def test_bad_bytes_fail_one_image_without_raising(engine):
    pool = OcrPool(engine, workers=1, max_pixels=10_000_000)
    try:
        result = pool.submit(b"not an image").result(timeout=60)
    finally:
        pool.close()
    assert result.error and result.lines == []
    assert result.payload()["ocr_engine"].endswith(":failed")


def _text_folder(folder: Path, n: int) -> dict[str, str]:
    """n photos, each with one distinct word; returns file name -> word."""
    vocabulary = ["ANCHOR", "BISTRO", "CANYON", "DRAGON", "EMPIRE", "FALCON", "GARDEN", "HARBOR"]
    folder.mkdir(parents=True)
    names = {}
    for i in range(n):
        name = f"sign_{i:02d}.jpg"
        render(PHOTOS[i], [(vocabulary[i], 40, 0)]).save(folder / name, quality=92)
        names[name] = vocabulary[i].lower()
    return names


def test_enrich_is_incremental_and_survives_kill_9(pixseek_env, tmp_path):
    folder = tmp_path / "signs"
    truth = _text_folder(folder, 6)
    env = {**pixseek_env, "PIXSEEK_OCR_WORKERS": "1"}
    done = run_pixseek(["ingest", str(folder), "-c", "signs", "--json"], env)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixseek", "enrich", "ocr", "-c", "signs"],
        env={**__import__("os").environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    killed_after = 0
    for line in proc.stderr:  # "enrich ocr: N images read (N/6 points)"
        if "images read" in line:
            killed_after = int(line.split(":")[1].split()[0])
            if killed_after >= 2:
                proc.send_signal(signal.SIGKILL)
                break
        assert time.monotonic() < deadline
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and 2 <= killed_after < 6

    resumed = run_pixseek(["enrich", "ocr", "-c", "signs", "--json"], env)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    # Everything written before the kill is kept; at most the images in flight are redone.
    assert summary["already_done"] >= killed_after
    assert summary["ocr_done"] + summary["already_done"] == 6
    again = json.loads(run_pixseek(["enrich", "ocr", "-c", "signs", "--json"], env).stdout)
    assert again["ocr_done"] == 0 and again["already_done"] == 6

    from pixseek.search.engine import run_search
    from pixseek.search.query import parse_query_text
    from pixseek.search.text_encoder import query_encoder

    from pixseek.config import load_settings
    from pixseek.store import open_store

    settings = load_settings()
    store = open_store(settings)
    found = 0
    for name, word in truth.items():
        hits = run_search(store, None, "signs", parse_query_text(f'ocr:"{word}"'))
        found += bool(hits) and hits[0].payload["source"] == name
    assert found >= len(truth) - 1, found  # 40 px white-on-dark words: all or nearly all read
    # auto mode on a collection with OCR text: hybrid (BM25 first here, the CLIP is random)
    hits = run_search(store, query_encoder(settings), "signs", parse_query_text("falcon"), limit=3)
    assert hits[0].payload["source"] == "sign_05.jpg"
    assert "falcon" in hits[0].payload["ocr"].lower() and hits[0].payload["ocr_lines"]
