"""`pixseek search` end to end on coco_mini, ingested once with the tiny random CLIP.

The model is random, so rankings are meaningless; these tests check the plumbing: every query
shape runs, output is well-formed, filters hold, pagination is stable, errors are one line.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import COCO, json_lines, run_pixseek

LABELS = {
    row["filename"]: row
    for row in map(json.loads, (COCO / "labels.jsonl").read_text().splitlines())
}
IMAGE = COCO / "val2017" / "000000000139.jpg"


@pytest.fixture(scope="module")
def coco_env(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> dict:
    env = {
        "PIXSEEK_DATA_DIR": str(tmp_path_factory.mktemp("search-data")),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
        "PIXSEEK_BATCH_SIZE": "32",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("PIXSEEK_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        from click.testing import CliRunner

        from pixseek.cli import main

        args = ["ingest", str(COCO), "--labels", str(COCO / "labels.jsonl"), "-c", "coco", "--json"]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
    return env


@pytest.fixture
def search(coco_env: dict, monkeypatch: pytest.MonkeyPatch):
    """Run `pixseek search ... -c coco` in-process; returns (code, stdout, stderr)."""
    from click.testing import CliRunner

    from pixseek.cli import main

    for key in [k for k in os.environ if k.startswith("PIXSEEK_")]:
        monkeypatch.delenv(key)
    for key, value in coco_env.items():
        monkeypatch.setenv(key, value)

    def run(*args: str, collection: str = "coco") -> tuple[int, str, str]:
        argv = ["search", *map(str, args), "-c", collection]
        result = CliRunner().invoke(main, argv, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run


def _records(out: str) -> list[dict]:
    records = json_lines(out)
    assert len(records) == len(out.strip().splitlines())  # nothing but JSON lines
    return records


def _check_records(records: list[dict], limit: int, offset: int = 0) -> None:
    assert len(records) == limit
    assert [r["rank"] for r in records] == list(range(offset + 1, offset + limit + 1))
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 - 1e-6 <= s <= 1.0 + 1e-6 for s in scores)
    for record in records:
        assert set(record) == {"rank", "id", "score", "source", "payload"}
        assert record["source"] in LABELS and record["payload"]["source"] == record["source"]
        assert re.fullmatch(r"[0-9a-f-]{36}", record["id"])
    assert len({r["id"] for r in records}) == len(records)


def test_text_query_json(search):
    code, out, err = search("a dog on the beach", "--json", "-k", "7")
    assert code == 0, err
    _check_records(_records(out), 7)


def test_text_query_table(search):
    code, out, _ = search("dog", "--limit", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "score", "source", "labels"]
    assert len(lines) == 4 and lines[1].split()[0] == "1"


def test_filtered_queries_hold_their_filters(search):
    code, out, err = search("animal", "--json", "-k", "200", "--where", "label=dog")
    assert code == 0, err
    records = _records(out)
    expected = {name for name, row in LABELS.items() if "dog" in (row["labels"] or [])}
    assert {r["source"] for r in records} == expected

    code, out, _ = search(
        "animal", "--json", "-k", "200", "-w", "label in (dog, cat)", "-w", "width>=600",
        "-w", "source~val2017/",
    )  # fmt: skip
    records = _records(out)
    assert records
    for r in records:
        assert {"dog", "cat"} & set(r["payload"]["labels"])
        assert r["payload"]["width"] >= 600 and r["source"].startswith("val2017/")

    code, out, _ = search("x", "--json", "-k", "200", "-w", "label!=person")
    assert all("person" not in r["payload"]["labels"] for r in _records(out))
    raw = json.dumps({"must": [{"key": "labels", "match": {"value": "pizza"}}]})
    code, out, _ = search("food", "--json", "-k", "200", "-w", raw)
    pizza = {name for name, row in LABELS.items() if "pizza" in (row["labels"] or [])}
    assert {r["source"] for r in _records(out)} == pizza


def test_image_query_finds_the_image_itself(search):
    code, out, err = search("--image", IMAGE, "--json", "-k", "3")
    assert code == 0, err
    records = _records(out)
    assert records[0]["source"] == "val2017/000000000139.jpg"
    assert records[0]["score"] == pytest.approx(1.0, abs=0.02)


def test_composed_query(search, tmp_path):
    html = tmp_path / "composed.html"
    code, out, err = search(
        "--image", IMAGE, "--modify", "at night", "--modify-weight", "0.3", "--json", "-k", "5",
        "--html", html,
    )  # fmt: skip
    assert code == 0, err
    composed = _records(out)
    _check_records(composed, 5)
    assert html.is_file() and html.read_text().count("data:image/jpeg;base64,") == 5
    # lambda = 1 is the text alone; lambda near 0 is the image alone
    _, out, _ = search("--image", IMAGE, "--modify", "at night", "--modify-weight", "1", "--json")
    _, text_only, _ = search("at night", "--json")
    assert [r["id"] for r in _records(out)] == [r["id"] for r in _records(text_only)]


def test_more_like_this_negative_terms_and_weights(search):
    _, out, _ = search("dog", "--json", "-k", "2")
    first, second = (r["id"] for r in _records(out))
    code, out, err = search("--like", first, "--json", "-k", "5")
    assert code == 0, err
    like = _records(out)
    _check_records(like, 5)
    assert first not in {r["id"] for r in like}  # the example itself is left out
    # rclip-style terms with dashes reach the query parser, not click's option parser
    code, out, err = search("dog", "-:grass", "-2:beach", "--like", f"-:{second}", "--json")
    assert code == 0, err
    _check_records(_records(out), 10)
    code, out, err = search("2:dog", "+", "cat", f"-{IMAGE}", "--json")
    assert code == 0, err
    _check_records(_records(out), 10)


def test_pagination_is_stable(search):
    _, out, _ = search("street", "--json", "-k", "24")
    everything = [r["id"] for r in _records(out)]
    pages = []
    for offset in (0, 8, 16):
        _, out, _ = search("street", "--json", "-k", "8", "--offset", str(offset))
        page = _records(out)
        _check_records(page, 8, offset)
        pages.extend(r["id"] for r in page)
    assert pages == everything


def test_threshold_and_ensemble_switch(search):
    _, out, _ = search("a red bus", "--json", "-k", "200")
    scores = [r["score"] for r in _records(out)]
    cut = scores[20] - 2e-6  # JSON scores are rounded to 6 decimals; stay below the 21st
    _, out, _ = search("a red bus", "--json", "-k", "200", "--threshold", str(cut))
    kept = _records(out)
    assert len(kept) >= 21 and all(r["score"] >= cut - 1e-6 for r in kept)
    _, plain, _ = search("a red bus", "--json", "-k", "3", "--no-ensemble")
    assert [r["score"] for r in _records(plain)] != scores[:3]  # no templates: other vector


def test_repeated_text_queries_hit_the_embedding_cache(search):
    from pixseek.search.text_encoder import query_encoder

    from pixseek.config import load_settings

    encoder = query_encoder(load_settings())  # the process-wide one the CLI uses
    search("a query worth caching", "--json", "-k", "1")
    before = encoder.cache_stats()
    code, _, _ = search("a query worth caching", "--json", "-k", "1")
    after = encoder.cache_stats()
    assert code == 0
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    assert query_encoder(load_settings()) is encoder


def test_html_contact_sheet_is_self_contained(search, tmp_path):
    html = tmp_path / "sheet.html"
    code, out, err = search("people", "-k", "6", "--html", html, "-w", "label=person")
    assert code == 0, err
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<figure>") == 6 and page.count("data:image/jpeg;base64,") == 6
    assert "http://" not in page and "https://" not in page and 'src="/' not in page
    assert "label=person" in page
    assert "wrote" in err


@pytest.mark.parametrize(
    ("args", "collection", "fragment"),
    [
        (["dog"], "nope", "collection 'nope' does not exist"),
        (["dog", "-w", "width>=abc"], "coco", "--where 'width>=abc': expected a number at position 7"),
        ([], "coco", "nothing to search for"),
        (["--image", "./definitely-missing.jpg"], "coco", "query image ./definitely-missing.jpg does not exist"),
        (["--like", "00000000-0000-0000-0000-000000000001"], "coco", "is not in collection 'coco'"),
        (["--like", "12"], "coco", "is not a point id"),
        (["-:grass"], "coco", "only negative terms"),
        (["dog", "--modify", "at night"], "coco", "--modify needs exactly one reference"),
        (["dog", "--where", "label in (dog"], "coco", "expected ',' or ')' at position 13"),
    ],
)  # fmt: skip
def test_errors_are_one_line(search, args, collection, fragment):
    code, out, err = search(*args, collection=collection)
    assert code == 2 and out == ""
    assert err.startswith("pixseek: error: ") and err.count("\n") == 1
    assert fragment in err


def test_subprocess_entry_point(coco_env):
    """The real console entry point: a bad filter exits 2 with one line, before any heavy work.

    (A successful search in a subprocess would find the embedded store held open by this test
    process, so the success paths are covered in-process above.)
    """
    result = run_pixseek(["search", "dog", "-c", "coco", "-w", "taken>=soon"], coco_env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pixseek: error: --where 'taken>=soon': expected a date (YYYY-MM-DD) or datetime "
        "(YYYY-MM-DDTHH:MM:SS) at position 7"
    ]


def test_feedback_diversity_and_cutoff_flags(search):
    code, out, _ = search("people", "--json", "-k", "10")
    first = _records(out)
    good, bad = first[5]["id"], first[0]["id"]
    code, out, err = search("people", "--good", good, "--bad", bad, "--json", "-k", "10")
    assert code == 0, err
    steered = [r["id"] for r in _records(out)]
    assert steered.index(good) < 5 and (bad not in steered or steered.index(bad) > 0)
    # `--diverse` without a value takes 0.5 and leaves the next word to the query.
    code, out, err = search("--diverse", "people", "--json", "-k", "10")
    assert code == 0, err
    diverse = [r["id"] for r in _records(out)]
    assert diverse[0] == first[0]["id"] and len(diverse) == 10
    code, out, err = search("people", "--diverse", "0.9", "--json", "-k", "5", "--offset", "5")
    assert code == 0, err
    code, out, err = search("people", "--cutoff", "gap:0.0001", "--json", "-k", "50")
    assert code == 0 and len(_records(out)) < 50
    assert "the list ends at" in err and "gap:0.0001" in err
    code, _, err = search("people", "--cutoff", "top:3")
    assert code == 2 and "gap:MARGIN" in err and len(err.strip().splitlines()) == 1


def test_collections_show_counts_labels_like_the_sidecar(coco_env, monkeypatch):
    from collections import Counter

    from click.testing import CliRunner

    from pixseek.cli import main

    for key, value in coco_env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["collections", "show", "coco", "--json"])
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    expected = Counter(label for row in LABELS.values() for label in row.get("labels") or [])
    assert shown["facets"]["labels"] == dict(expected)
    assert sum(shown["facets"]["formats"].values()) == shown["points"]
    dogs = CliRunner().invoke(main, ["collections", "show", "coco", "-w", "label=dog", "--json"])
    counted = json.loads(dogs.stdout)
    assert counted["matching"] == expected["dog"] == counted["facets"]["labels"]["dog"]
    text = CliRunner().invoke(main, ["collections", "show", "coco"]).stdout
    assert f"dog {expected['dog']}" in text and text.startswith("coco: ")
