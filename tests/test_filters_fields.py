"""Filters never fail silently: a misspelt field is an error naming the real ones, and labels
match whatever their case (the displayed label keeps its case), on both store backends."""

from __future__ import annotations

import json
import shutil

import pytest
from pixseek.ingest.labels import load_labels
from pixseek.ingest.pipeline import IngestOptions, run_ingest
from pixseek.search.filters import compile_filters, parse_where

from pixseek.errors import UserError
from tests.conftest import COCO
from tests.test_ingest_locations import embedders  # noqa: F401 - fixture

JPEGS = sorted((COCO / "val2017").glob("*.jpg"))


@pytest.fixture
def dogs(store, embedders, tmp_path):  # noqa: F811
    folder = tmp_path / "dogs"
    folder.mkdir()
    for i in range(3):
        shutil.copy2(JPEGS[i], folder / f"{i}.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\n0.jpg,Shih-Tzu\n1.jpg,shih-tzu|Tench\n2.jpg,cat\n")
    options = IngestOptions(collection="dogs", labels=load_labels(labels), batch_size=4)
    run_ingest(store, embedders, [str(folder)], options)
    return store


def _sources(store, *expressions: str) -> set[str]:
    flt = compile_filters(expressions)
    return {p.payload["source"] for p in store.scroll("dogs", filter=flt)}


def test_labels_match_in_any_case(dogs):
    assert _sources(dogs, "label=shih-tzu") == {"0.jpg", "1.jpg"}
    assert _sources(dogs, "label=SHIH-TZU") == {"0.jpg", "1.jpg"}
    assert _sources(dogs, "label=tench") == {"1.jpg"}
    assert _sources(dogs, "label in (TENCH, Cat)") == {"1.jpg", "2.jpg"}
    assert _sources(dogs, "label!=shih-tzu") == {"2.jpg"}
    assert _sources(dogs, "label not in (cat, tench)") == {"0.jpg"}
    shown = {p.payload["source"]: p.payload["labels"] for p in dogs.scroll("dogs")}
    assert shown["0.jpg"] == ["Shih-Tzu"] and shown["1.jpg"] == ["shih-tzu", "Tench"]


@pytest.mark.parametrize(
    ("expression", "suggestion"),
    [("lable=tench", "label"), ("widht>=100", "width"), ("sorce~x", "source")],
)
def test_unknown_field_is_one_line_listing_the_fields(expression, suggestion):
    with pytest.raises(UserError) as info:
        parse_where(expression)
    text = str(info.value)
    assert "\n" not in text and f"unknown field {expression[:5]!r}" in text
    assert f"did you mean {suggestion}?" in text
    assert "label, caption, source" in text and "meta.KEY" in text


def test_custom_meta_fields_stay_allowed():
    assert parse_where("meta.image_id=5").must[0].key == "meta.image_id"
    assert parse_where("meta.tags[]=beach").must[0].key == "meta.tags[]"


def test_cli_misspelt_field_exits_2_with_the_hint(cli, pixseek_env, tmp_path, monkeypatch):
    # In-process text search without the background ONNX export: that export's thread swaps
    # sys.stdout (torch.onnx) and leaves later CliRunner calls in this process printing nowhere.
    monkeypatch.setenv("PIXSEEK_TEXT_BACKEND", "torch")
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy2(JPEGS[0], folder / "a.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\na.jpg,Shih-Tzu\n")
    code, _, err = cli("ingest", folder, "-c", "one", "--labels", labels)
    assert code == 0, err
    code, out, err = cli("search", "dog", "-c", "one", "-w", "lable=tench")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) <= 2 and "unknown field 'lable'" in err
    code, out, err = cli("search", "dog", "-c", "one", "-w", "label=shih-tzu", "--json")
    assert code == 0, err
    (hit,) = [json.loads(line) for line in out.splitlines()]
    assert hit["payload"]["labels"] == ["Shih-Tzu"]


@pytest.mark.parametrize(
    "where",
    ["meta[wnid]=n01440764", '{"must": [{"key": "meta[x]", "match": {"value": 0}}]}'],
)
def test_a_path_qdrant_cannot_read_is_a_one_line_error(where):
    """Qdrant's JSON paths know meta.KEY, KEY[] and KEY[0]; `meta[x]` used to reach the store
    and fail there (Edge and local mode raise ValueError: API 500), found by the filter fuzz."""
    with pytest.raises(UserError, match="not a payload path Qdrant can read.*meta.KEY"):
        parse_where(where)


def test_the_embedded_store_refuses_a_bad_path_in_one_line(dogs):
    """The store's own net, for filters built without the parser."""
    from qdrant_client import models

    from pixseek.errors import InputError
    from pixseek.store.edge import EdgeStore

    bad = models.Filter(
        must=[models.FieldCondition(key="meta[x]", match=models.MatchValue(value=0))]
    )
    if not isinstance(dogs, EdgeStore):
        pytest.skip("the translation to Qdrant Edge filters is the embedded store's")
    with pytest.raises(InputError, match="invalid JSON path"):
        list(dogs.scroll("dogs", filter=bad))
