"""The web page in headless Chromium (Debian's `chromium`, driven by Playwright) against a real
`pixseek serve` subprocess over coco_mini: search with a filter, thumbnails load, "more like this",
and a generative search with live progress and the generated references beside the hits; the
landing view (browse before any query), a facet click that filters, the detail view, keyboard
navigation and a relevance-feedback round that moves a marked result up.

`make test` installs chromium when it is missing and it runs as root. Without chromium the test
fails with that advice, and skips only when it cannot be installed (not root). Screenshots go to
the test's temp dir; set PIXSEEK_SCREENSHOT=path to also keep the last one, and
PIXSEEK_KEEP_SCREENSHOTS=1 to rewrite bench/results/page-steering.png (256 colours).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import COCO, REPO, serve_process

IMAGE = COCO / "val2017" / "000000000139.jpg"

pytestmark = pytest.mark.timeout(300)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The first n images matching a selector have loaded (below the fold, lazy ones may not).
ALL_LOADED = """(min) => {
  const imgs = [...document.querySelectorAll(min.sel)].slice(0, min.n);
  return imgs.length === min.n && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""
MESSAGE_HAS = "(text) => document.querySelector('#message').textContent.includes(text)"
CARD_COUNT = "(n) => document.querySelectorAll('#grid .card').length === n"
FOCUSED = "() => document.activeElement.dataset.id || null"
STEERING_SHOT = REPO / "bench" / "results" / "page-steering.png"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() == 0:
        pytest.fail(
            "chromium is not installed; `make test` installs it (apt-get install -y chromium)"
        )
    pytest.skip("chromium is not installed and cannot be installed without root")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, tiny_t2i_dir: Path
) -> Iterator[str]:
    """`pixseek serve` in a subprocess over coco_mini (ingested by another subprocess first:
    the embedded store is open in one process at a time)."""
    root = tmp_path_factory.mktemp("browser")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")}
    env.update(
        PIXSEEK_DATA_DIR=str(root / "data"),
        PIXSEEK_CLIP_MODEL=f"local-dir:{tiny_clip_dir}",
        PIXSEEK_T2I_MODEL=str(tiny_t2i_dir),
        PIXSEEK_T2I_STEPS="2",
        PIXSEEK_T2I_SIZE="32",
        PIXSEEK_DEVICE="cpu",
        HF_HUB_OFFLINE="1",
    )
    pixseek = [sys.executable, "-m", "pixseek"]
    ingest = subprocess.run(
        [*pixseek, "ingest", str(COCO), "--labels", str(COCO / "labels.jsonl"), "-c", "coco"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert ingest.returncode == 0, ingest.stderr
    log = root / "serve.log"
    try:
        with serve_process(env, log) as (base, _):
            yield base
    finally:
        print(log.read_text()[-3000:])


def _labels(source: str) -> list[str]:
    rows = (json.loads(line) for line in (COCO / "labels.jsonl").read_text().splitlines())
    return next(row.get("labels") or [] for row in rows if row["filename"] == source)


def test_search_more_like_this_and_generate_in_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    outside: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 960})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.on(
                "request", lambda r: None if r.url.startswith(server) else outside.append(r.url)
            )
            page.goto(f"{server}/")
            page.wait_for_selector("#collection option[value=coco]", state="attached")
            assert "ok · embedded store" in page.inner_text("#health")

            # A text search with a filter: every hit is a dog, every thumbnail loads.
            page.fill("#q", "a dog playing outside")
            page.fill("#where", "label=dog")
            page.click("#search-btn")
            page.wait_for_function(MESSAGE_HAS, arg="results for")
            page.wait_for_function(ALL_LOADED, arg={"sel": "#grid .card img", "n": 1})
            cards = page.locator("#grid .card")
            count = cards.count()
            assert 1 <= count <= 24
            page.wait_for_function(ALL_LOADED, arg={"sel": "#grid .card img", "n": count})
            assert "results for a dog playing outside" in page.inner_text("#message")
            for index in range(count):
                source = cards.nth(index).locator(".source").inner_text()
                assert "dog" in _labels(source)
                assert (
                    cards.nth(index).locator(".score").inner_text().startswith(f"#{index + 1} · ")
                )
            page.screenshot(path=str(tmp_path / "search.png"), full_page=True)

            # An uploaded example image (multipart): it finds itself first.
            page.fill("#q", "")
            page.fill("#where", "")
            page.set_input_files("#image", str(IMAGE))
            page.click("#search-btn")
            page.wait_for_function(
                "() => document.querySelector('#message').textContent.includes('upload:')"
            )
            page.wait_for_function(ALL_LOADED, arg={"sel": "#grid .card img", "n": 5})
            assert cards.count() == 24
            assert cards.nth(0).locator(".source").inner_text() == "val2017/000000000139.jpg"
            assert "results for upload:000000000139.jpg" in page.inner_text("#message")

            # More like this: the clicked image becomes the query and leaves the results.
            first = cards.nth(0).get_attribute("data-id")
            cards.nth(0).locator("button.like").click()
            page.wait_for_selector("#like-bar:not([hidden])")
            page.wait_for_function(
                "(id) => document.querySelector('#grid .card') && "
                "!document.querySelector(`#grid .card[data-id='${id}']`)",
                arg=first,
            )
            assert f"point:{first}" in page.inner_text("#message")

            # Generative search: progress shows, generated references appear beside the hits.
            page.fill("#q", "a dog on a couch")
            page.fill("#where", "label=dog")
            page.click("#generate-btn")
            page.wait_for_selector("#job:not([hidden])")
            page.wait_for_function(
                ALL_LOADED, arg={"sel": "#generated-grid img", "n": 4}, timeout=120_000
            )
            page.wait_for_function(ALL_LOADED, arg={"sel": "#grid .card img", "n": 1})
            assert page.is_visible("#generated")
            assert page.inner_text("#job-status").startswith("done: ")
            assert "rrf fusion" in page.inner_text("#message")
            shot = tmp_path / "generate.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert errors == [] and outside == []  # no script errors, nothing fetched from outside
    keep = os.environ.get("PIXSEEK_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_live_server_refuses_traversal(server):
    """Raw paths over a real socket (http.client sends them as written)."""
    attempts = [
        "/images/..%2F..%2F..%2Fetc%2Fpasswd/00000000-0000-0000-0000-000000000000",
        "/images/coco/..%2F..%2F..%2Fetc%2Fpasswd",
        "/images/coco/../../../../etc/passwd",
        "/static/../api/app.py",
        "/static/..%2Fapp.py",
        "/jobs/..%2F..%2Fetc%2Fpasswd/images/0",
    ]
    host, port = server.removeprefix("http://").split(":")
    for path in attempts:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status in (404, 422), (path, response.status)
        assert b"root:" not in body and b"create_app" not in body


def test_landing_facets_detail_keyboard_and_feedback_in_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.goto(f"{server}/")

            # Landing: the collection newest first before any query, with "more" paging.
            page.wait_for_function(MESSAGE_HAS, arg="Browsing 24 pictures, newest first")
            page.wait_for_function(ALL_LOADED, arg={"sel": "#grid .card img", "n": 4})
            cards = page.locator("#grid .card")
            assert cards.count() == 24 and page.is_visible("#more")
            assert page.inner_text("#matching") == "239 pictures match"
            page.click("#more")
            page.wait_for_function(CARD_COUNT, arg=48)

            # A facet click filters the grid to that label; the counts follow the filter.
            dog = page.locator("#facet-groups button[data-facet=labels][data-value=dog]")
            expected = int(dog.locator(".count").inner_text())
            assert expected == sum("dog" in _labels_of(row) for row in _rows())
            dog.click()
            page.wait_for_function(MESSAGE_HAS, arg="· label=dog")
            page.wait_for_function(CARD_COUNT, arg=expected)
            assert page.inner_text("#matching") == f"{expected} pictures match"
            assert page.inner_text("#chips") == "label=dog ✕"
            for index in range(expected):
                assert "dog" in _labels(cards.nth(index).locator(".source").inner_text())
            assert dog.get_attribute("aria-pressed") == "true"
            assert int(dog.locator(".count").inner_text()) == expected
            page.click("#chips button.chip")  # removable: the whole collection again
            page.wait_for_function(CARD_COUNT, arg=24)
            page.wait_for_function(
                "() => document.querySelector('#matching').textContent.startsWith('239 ')"
            )

            # Keyboard: arrows move the focus across the grid, Enter opens the detail view.
            ids = [cards.nth(i).get_attribute("data-id") for i in range(24)]
            columns = page.evaluate(
                "() => { const c = [...document.querySelectorAll('#grid .card')];"
                " return c.filter((x) => x.offsetTop === c[0].offsetTop).length; }"
            )
            cards.nth(0).focus()
            page.keyboard.press("ArrowRight")
            assert page.evaluate(FOCUSED) == ids[1]
            page.keyboard.press("ArrowDown")
            assert page.evaluate(FOCUSED) == ids[1 + columns]
            page.keyboard.press("Enter")
            page.wait_for_selector("#detail[open]")
            page.wait_for_function(ALL_LOADED, arg={"sel": "#detail-img", "n": 1})
            source = cards.nth(1 + columns).locator(".source").inner_text()
            fields = dict(
                zip(
                    page.locator("#detail-fields dt").all_inner_texts(),
                    page.locator("#detail-fields dd").all_inner_texts(),
                    strict=True,
                )
            )
            assert fields["source"] == source and fields["id"] == ids[1 + columns]
            assert {"labels", "width", "height", "mtime", "format"} <= fields.keys()
            assert page.inner_text("#detail-title") == source
            page.keyboard.press("Escape")
            page.wait_for_selector("#detail", state="hidden")
            assert page.evaluate(FOCUSED) == ids[1 + columns]  # the focus goes back

            # A feedback round: mark a lower result good, re-rank, it moves up.
            page.fill("#q", "people at a table")
            page.click("#search-btn")
            page.wait_for_function(MESSAGE_HAS, arg="results for people at a table")
            before = [cards.nth(i).get_attribute("data-id") for i in range(cards.count())]
            lower = before[12]
            cards.nth(12).locator("button[data-mark=good]").click()
            cards.nth(3).focus()
            page.keyboard.press("b")  # g/b on the focused result mark it too
            assert page.inner_text("#marks") == "2 marked: 1 good, 1 bad"
            page.keyboard.press("b")  # and a second press takes the mark back
            assert page.inner_text("#marks") == "1 marked: 1 good, 0 bad"
            page.click("#rerank")
            page.wait_for_function(MESSAGE_HAS, arg="1 marked good")
            page.wait_for_function(ALL_LOADED, arg={"sel": "#grid .card img", "n": 8})
            after = [cards.nth(i).get_attribute("data-id") for i in range(cards.count())]
            assert lower in after and after.index(lower) < 12 and after != before
            marked = page.locator(f"#grid .card[data-id='{lower}']")
            assert "marked-good" in (marked.get_attribute("class") or "")
            assert marked.locator("button[data-mark=good]").get_attribute("aria-pressed") == "true"

            # Diversity and a cutoff: the reason the list ends is shown.
            page.check("#diverse")
            page.select_option("#cutoff", "gap:0.05")
            page.click("#search-btn")
            page.wait_for_function(MESSAGE_HAS, arg="list ended by")
            page.wait_for_function(ALL_LOADED, arg={"sel": "#grid .card img", "n": 1})
            page.uncheck("#diverse")
            page.select_option("#cutoff", "")
            page.click("#search-btn")
            page.wait_for_function(
                "() => { const t = document.querySelector('#message').textContent;"
                " return t.includes('results for') && !t.includes('ended by'); }"
            )
            page.wait_for_function(ALL_LOADED, arg={"sel": "#grid .card img", "n": 12})
            shot = tmp_path / "page-steering.png"
            page.screenshot(path=str(shot))
            page.click("#clear-marks")
            page.wait_for_function(
                "() => { const t = document.querySelector('#message').textContent;"
                " return t.includes('results for') && !t.includes('marked'); }"
            )
            assert page.inner_text("#marks").startswith("No marks")
        finally:
            browser.close()
    assert errors == []
    assert shot.stat().st_size > 10_000
    if os.environ.get("PIXSEEK_KEEP_SCREENSHOTS"):  # bench/results/page-steering.png, 256 colours
        from PIL import Image

        Image.open(shot).convert("RGB").quantize(256).save(STEERING_SHOT, optimize=True)


def _rows() -> list[dict]:
    return [json.loads(line) for line in (COCO / "labels.jsonl").read_text().splitlines()]


def _labels_of(row: dict) -> list[str]:
    return row.get("labels") or []
