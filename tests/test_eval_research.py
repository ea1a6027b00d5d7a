"""`pixseek eval-research`: the plan for the full run, and a dry run on tiny random models."""

from __future__ import annotations

import json
import re

from tests.conftest import DATASETS

STRATEGIES = ("text", "generated", "text+mean", "weighted", "rrf")


def test_plan_of_the_full_run(cli, tmp_path):
    code, out, err = cli("eval-research", "--datasets", DATASETS, "--dry-run", "--out", tmp_path)
    assert code == 0, err
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    # coco_mini: 90 labelled images with <= 3 categories, 5 captions each, 4 images per query
    assert re.search(r"\| coco \| 90 \| 450 \| 2250 \| 1800 \|", rows["coco"])
    assert re.search(r"\| imagenette \| 3925 \| 10 \| 50 \| 40 \|", rows["imagenette"])
    assert "Expected run time: about" in out
    assert not list(tmp_path.rglob("*.json"))  # a dry run writes nothing


def test_research_dry_run_on_tiny_models(cli, pixseek_env, tiny_t2i_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("PIXSEEK_T2I_MODEL", str(tiny_t2i_dir))
    monkeypatch.setenv("PIXSEEK_T2I_STEPS", "1")
    monkeypatch.setenv("PIXSEEK_T2I_SIZE", "32")
    out = tmp_path / "research"
    args = ["eval-research", "--datasets", DATASETS, "--out", out, "--max-images", "20"]
    code, stdout, err = cli(
        *args, "--limit", "2", "--n-images", "1", "--k", "1,10", "--depth", "30"
    )
    assert code == 0, err
    table = (out / "research.md").read_text()
    assert "## coco: 2 queries" in table and "## imagenette: 2 queries" in table
    for strategy in STRATEGIES:
        assert table.count(f"| {strategy} |") == 2
    assert "ΔR@1" in table and "ΔP@10" in table and "a dry run, not results" in table
    data = json.loads((out / "research.json").read_text())
    assert set(data) == {"coco", "imagenette"}
    for name, metrics in (("coco", ("R@1", "R@10", "MRR")), ("imagenette", ("P@10", "AP"))):
        for metric in metrics:
            estimate = data[name]["strategies"]["rrf"][metric]
            assert 0.0 <= estimate["ci_low"] <= estimate["mean"] <= estimate["ci_high"] <= 1.0
        assert set(data[name]["versus_text"]) == set(STRATEGIES) - {"text"}
        full = json.loads((out / name / "metrics.json").read_text())
        assert full["queries_evaluated"] == 2 and full["settings"]["generation"]["n_images"] == 1
        assert (out / name / "report.html").is_file()
        assert full["settings"]["collection"]["points"] == 20
    assert "| coco | 20 | 2 | 10 | 2 |" in stdout  # the plan comes first


def test_full_coco_annotations_count_objects(cli, tmp_path):
    rows = [json.loads(line) for line in (DATASETS / "coco_mini" / "labels.jsonl").open()]
    val = [r for r in rows if r["filename"].startswith("val2017/")][:3]
    instances = {
        "images": [{"id": r["image_id"], "file_name": r["filename"].split("/")[1]} for r in val]
        + [{"id": 1, "file_name": "not-on-disk.jpg"}],
        "categories": [{"id": 1, "name": "dog"}],
        "annotations": [
            {"image_id": image_id, "category_id": 1}
            for image_id, count in zip(
                [r["image_id"] for r in val] + [1], [1, 3, 4, 1], strict=True
            )
            for _ in range(count)
        ],
    }
    captions = {
        "annotations": [
            {"image_id": r["image_id"], "caption": c} for r in val for c in r["captions"][:2]
        ]
    }
    (tmp_path / "i.json").write_text(json.dumps(instances))
    (tmp_path / "c.json").write_text(json.dumps(captions))
    code, out, err = cli(
        "eval-research", "--only", "coco", "--coco", DATASETS / "coco_mini", "--dry-run",
        "--coco-instances", tmp_path / "i.json", "--coco-captions", tmp_path / "c.json",
        "--out", tmp_path / "out", "--n-images", "2",
    )  # fmt: skip
    assert code == 0, err
    # images 1 and 2 have <= 3 objects (the third has 4; the fourth is not on disk)
    assert "| coco | 2 | 4 | 20 | 8 |" in out
    labels = (tmp_path / "out" / "coco-labels.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["n_objects"] for line in labels) == [1, 1, 3]
