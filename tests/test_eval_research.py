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
