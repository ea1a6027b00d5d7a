"""`pixseek eval` end to end on coco_mini with tiny random CLIP and diffusion models."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from tests.conftest import COCO, IMAGENETTE

STRATEGIES = "text,generated,text+mean,weighted,rrf"


@pytest.fixture(scope="module")
def tiny_t2i(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pixseek.models.random_weights import write_random_t2i

    return write_random_t2i(tmp_path_factory.mktemp("models") / "tiny-t2i")


@pytest.fixture
def eval_env(pixseek_env, tiny_t2i, monkeypatch):
    monkeypatch.setenv("PIXSEEK_T2I_MODEL", str(tiny_t2i))
    monkeypatch.setenv("PIXSEEK_T2I_STEPS", "2")
    monkeypatch.setenv("PIXSEEK_T2I_SIZE", "32")
    return pixseek_env


def test_query_builders(cli, tmp_path):
    out = tmp_path / "captions.jsonl"
    code, text, _ = cli("eval-queries", "captions", COCO / "labels.jsonl", "--out", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 0 and len(rows) == 239 * 5
    assert all(len(r["relevant"]) == 1 for r in rows)
    out = tmp_path / "classes.jsonl"
    cli("eval-queries", "labels", IMAGENETTE / "labels.csv", "--out", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows][:2] == ["English springer", "French horn"]
    assert len(rows) == 10 and rows[0]["query"] == "English springer"  # ensembling wraps it
    assert all("ensemble" not in r for r in rows)
    cli("eval-queries", "labels", COCO / "labels.jsonl", "--out", out, "--template", "a {} pic")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 80 and rows[0]["query"] == f"a {rows[0]['label']} pic"
    assert all(r["ensemble"] is False for r in rows)  # the template is applied once, here


def test_prepare_coco_keeps_images_with_few_objects(cli, tmp_path):
    instances = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in (1, 2, 3)],
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
        "annotations": [
            {"image_id": 1, "category_id": 1},
            {"image_id": 2, "category_id": 1},
            {"image_id": 2, "category_id": 2},
            {"image_id": 2, "category_id": 2},
        ],
    }
    captions = {
        "annotations": [{"image_id": 1, "caption": "a dog"}, {"image_id": 2, "caption": "x"}]
    }
    (tmp_path / "i.json").write_text(json.dumps(instances))
    (tmp_path / "c.json").write_text(json.dumps(captions))
    code, out, err = cli(
        "eval-queries", "prepare-coco", "--instances", tmp_path / "i.json",
        "--captions", tmp_path / "c.json", "--max-objects", "2", "--prefix", "val2017/",
        "--labels-out", tmp_path / "labels.jsonl", "--queries-out", tmp_path / "q.jsonl",
    )  # fmt: skip
    assert code == 0, err
    labels = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [row["filename"] for row in labels] == ["val2017/000000000001.jpg"]  # 2 has 3, 3 has 0
    assert labels[0]["labels"] == ["dog"] and labels[0]["captions"] == ["a dog"]
    queries = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert queries == [{"id": "1-c0", "query": "a dog", "relevant": ["val2017/000000000001.jpg"]}]


def test_eval_end_to_end_writes_every_output(cli, eval_env, tmp_path):
    code, _, err = cli("ingest", COCO, "--labels", COCO / "labels.jsonl", "-c", "coco", "--json")
    assert code == 0, err
    queries = tmp_path / "queries.jsonl"
    cli("eval-queries", "captions", COCO / "labels.jsonl", "--out", queries, "--limit", "3")
    with queries.open("a") as handle:
        handle.write(
            json.dumps({"id": "dogs", "query": "a photo of a dog.", "label": "dog"}) + "\n"
        )
        handle.write(json.dumps({"id": "none", "query": "unicorn", "label": "unicorn"}) + "\n")
    out = tmp_path / "report"
    args = ["eval", "-c", "coco", "--queries", queries, "--strategies", STRATEGIES]
    code, stdout, err = cli(*args, "--k", "1,5,10", "--out", out, "--n-images", "2")
    assert code == 0, err
    assert "| rrf |" in stdout

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries_evaluated"] == 4 and metrics["queries_without_relevant"] == 1
    assert set(metrics["strategies"]) == set(STRATEGIES.split(","))
    for name in ("R@1", "P@5", "nDCG@10", "AP", "AP@10", "MRR"):
        estimate = metrics["strategies"]["rrf"][name]
        assert 0.0 <= estimate["ci_low"] <= estimate["mean"] <= estimate["ci_high"] <= 1.0
    assert set(metrics["versus_text"]) == {"generated", "text+mean", "weighted", "rrf"}

    with (out / "per_query.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 * 5 and {r["strategy"] for r in rows} == set(STRATEGIES.split(","))
    assert (out / "metrics_vs_k.png").stat().st_size > 5000
    assert "| strategy |" in (out / "summary.md").read_text()

    page = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    generated = [s for s in sources if s.startswith("generated/")]
    thumbs = [s for s in sources if s.startswith("thumbs/")]
    assert len(generated) == 4 * 2 and len(thumbs) >= 4 * 5
    assert all((out / s).is_file() for s in sources)
    assert 'class="hit"' in page and "data-delta" in page

    # A second run reuses the generated images: the cache holds exactly one set.
    cache = Path(eval_env["PIXSEEK_DATA_DIR"]) / "cache" / "generated"
    before = sorted(p.name for p in cache.rglob("*.png"))
    code, _, err = cli(*args, "--out", tmp_path / "again", "--n-images", "2")
    assert code == 0, err
    assert sorted(p.name for p in cache.rglob("*.png")) == before


def test_eval_bad_input_is_one_line(cli, eval_env, tmp_path):
    code, _, err = cli("eval", "-c", "nope", "--queries", tmp_path / "missing.jsonl")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "x"}\n')
    code, _, err = cli("eval", "-c", "nope", "--queries", queries)
    assert code == 2 and "relevant" in err
    queries.write_text('{"query": "x", "label": "dog"}\n')
    code, _, err = cli("eval", "-c", "nope", "--queries", queries, "--strategies", "magic")
    assert code == 2 and "unknown strategy" in err
    code, _, err = cli("eval", "-c", "nope", "--queries", queries)
    assert code == 2 and "does not exist" in err
