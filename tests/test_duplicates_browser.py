"""The page's duplicates view and "Collapse duplicates" in headless Chromium, against a real
`pixseek serve` over a folder with re-encoded, cropped and copied photos.

Set PIXSEEK_SCREENSHOT_DUPLICATES=path to keep the screenshot of the review view.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, serve_process
from tests.test_browser import ALL_LOADED, CHROMIUM_ARGS, chromium_path
from tests.test_duplicates_cli import make_archive

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def server(tmp_path: Path, tiny_clip_dir: Path) -> Iterator[str]:
    folder = make_archive(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")}
    env.update(
        PIXSEEK_DATA_DIR=str(tmp_path / "data"),
        PIXSEEK_CLIP_MODEL=f"local-dir:{tiny_clip_dir}",
        PIXSEEK_DEVICE="cpu",
        HF_HUB_OFFLINE="1",
    )
    pixseek = [sys.executable, "-m", "pixseek"]
    done = subprocess.run(
        [*pixseek, "ingest", str(folder), "-c", "photos"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    with serve_process(env, tmp_path / "serve.log") as (base, _):
        yield base, env


def test_duplicates_view_and_collapse(server, tmp_path):
    from playwright.sync_api import sync_playwright

    server, env = server
    # While the server holds the store, the command runs through it (pixseek/store/remote.py).
    pixseek = [sys.executable, "-m", "pixseek"]
    found = subprocess.run(
        [*pixseek, "duplicates", "-c", "photos", "--json", "--no-confirm", "--update-hashes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert found.returncode == 0, found.stderr
    lines = [json.loads(line) for line in found.stdout.splitlines()]
    assert lines[0]["hashed"] == 0 and lines[0]["vector_added"] is False
    assert sorted(g["size"] for g in lines[1:]) == [2, 2, 2]

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{server}/")
            page.wait_for_selector("#collection option[value=photos]", state="attached")

            page.fill("#q", "a photo")
            page.check("#collapse")
            page.click("#search-btn")
            # The first text query may export the text tower to ONNX: allow it time.
            page.wait_for_function(
                "() => /result|rror|not/.test(document.querySelector('#message').textContent)",
                timeout=180_000,
            )
            assert "4 results" in page.inner_text("#message"), page.inner_text("#message")
            page.wait_for_function(ALL_LOADED, arg={"sel": "#grid .card img", "n": 4})
            assert page.locator("#grid .card").count() == 4
            assert page.locator("#grid .card .group").count() == 3  # "+1 near duplicate"

            page.click("#dups-btn")
            page.wait_for_selector("#dups .dup-group")
            page.wait_for_function(ALL_LOADED, arg={"sel": "#dups .card img", "n": 6})
            assert page.is_hidden("#results")
            assert page.locator("#dups .dup-group").count() == 3
            assert page.locator("#dups .card.keep").count() == 3
            assert "3 near groups, 3 duplicates among 7 pictures" in page.inner_text(
                "#dups-summary"
            )
            shot = tmp_path / "duplicates.png"
            page.screenshot(path=str(shot), full_page=True)

            page.select_option("#dups-tier", "exact")
            page.wait_for_function(
                "() => document.querySelectorAll('#dups .dup-group').length === 1"
            )
        finally:
            browser.close()
    assert errors == []
    keep = os.environ.get("PIXSEEK_SCREENSHOT_DUPLICATES")
    if keep:
        shutil.copy(shot, keep)
