"""`pixseek eval` numbers checked on a real collection: raw scores, ties, missing items, syntax.

One coco_mini collection (tiny random CLIP, eager fp32) plus lossless PNG and BMP copies of three
images: each pair has identical pixels, hence identical vectors, hence real ties in raw scores.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.conftest import COCO
from tests.eval_reference import expected_metrics_by_group

DEPTH = 300  # above the collection's 245 points: every ranking is complete
KS = "1,10,300"


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, tiny_t2i_dir: Path):
    from click.testing import CliRunner

    from pixseek.cli import main

    root = tmp_path_factory.mktemp("trust")
    dups = root / "dups"
    dups.mkdir()
    stems = []
    for image in sorted((COCO / "val2017").glob("*.jpg"))[:3]:
        pixels = Image.open(image).convert("RGB")
        pixels.save(dups / f"{image.stem}.png")
        pixels.save(dups / f"{image.stem}.bmp")
        stems.append(image.stem)
    patch = pytest.MonkeyPatch()
    import os

    for key in [k for k in os.environ if k.startswith("PIXSEEK_")]:
        patch.delenv(key)
    env = {
        "PIXSEEK_DATA_DIR": str(root / "data"),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
        "PIXSEEK_BATCH_SIZE": "16",
        "PIXSEEK_BACKEND": "eager",  # deterministic per image, so the twins tie exactly
        "PIXSEEK_PRECISION": "fp32",
        "PIXSEEK_T2I_MODEL": str(tiny_t2i_dir),
        "PIXSEEK_T2I_STEPS": "2",
        "PIXSEEK_T2I_SIZE": "32",
    }
    for key, value in env.items():
        patch.setenv(key, value)

    def run(*args: object) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    code, _, err = run("ingest", dups, COCO, "--labels", COCO / "labels.jsonl", "-c", "coco")
    assert code == 0, err
    yield SimpleNamespace(root=root, run=run, stems=stems, clip=tiny_clip_dir)
    patch.undo()


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _per_query(out: Path) -> dict[str, dict]:
    return {
        row["query_id"]: row
        for row in map(json.loads, (out / "per_query.jsonl").read_text().splitlines())
    }


@pytest.fixture(scope="module")
def real_run(coco, tmp_path_factory):
    """One `pixseek eval` with caption, label, tie and missing-item queries; text and rrf (whose
    rank-based scores tie often)."""
    folder = tmp_path_factory.mktemp("run")
    queries = folder / "queries.jsonl"
    code, _, err = coco.run(
        "eval-queries", "captions", COCO / "labels.jsonl", "--out", queries, "--limit", "4"
    )
    assert code == 0, err
    rows = [json.loads(line) for line in queries.read_text().splitlines()]
    rows += [{"id": f"label-{x}", "query": x, "label": x} for x in ("dog", "bus")]
    for stem in coco.stems:  # a twin relevant: its tie partner is not
        rows.append(
            {"id": f"tie-{stem}", "query": "a dog", "relevant": [f"{stem}.png", "gone.jpg"]}
        )
    rows.append({"id": "half", "query": "a cat", "relevant": [rows[0]["relevant"][0], "x.jpg"]})
    _write(queries, rows)
    out = folder / "out"
    args = ["eval", "-c", "coco", "--queries", queries, "--strategies", "text,rrf"]
    code, _, err = coco.run(*args, "--k", KS, "--depth", DEPTH, "--n-images", "1", "--out", out)
    assert code == 0, err
    return SimpleNamespace(queries=queries, out=out, args=args)


def test_metrics_equal_an_independent_numpy_implementation_on_every_query(real_run):
    ks = [int(k) for k in KS.split(",")]
    per_query = _per_query(real_run.out)
    checked = tied = 0
    for row in per_query.values():
        for strategy, record in row["strategies"].items():
            ranking = [(point_id, score) for point_id, score in record["ranking"]]
            reference = expected_metrics_by_group(
                ranking, set(row["relevant_present"]), row["n_relevant"], ks
            )
            assert set(reference) == set(record["metrics"])
            for name, value in reference.items():
                assert record["metrics"][name] == pytest.approx(value, abs=1e-9), (
                    row["query_id"],
                    strategy,
                    name,
                )
            checked += 1
            counts = Counter(score for _, score in ranking)
            tied += any(
                counts[score] > 1
                for point_id, score in ranking
                if point_id in row["relevant_present"]
            )
    assert checked == len(per_query) * 2
    assert tied >= 3  # relevant items inside real tie groups were part of the check

    # The CSV carries the same full-precision values; metrics.json means are their means.
    with (real_run.out / "per_query.csv").open() as handle:
        for line in csv.DictReader(handle):
            metrics = per_query[line["query_id"]]["strategies"][line["strategy"]]["metrics"]
            assert float(line["AP"]) == metrics["AP"] and float(line["R@10"]) == metrics["R@10"]
    summary = json.loads((real_run.out / "metrics.json").read_text())
    for strategy in ("text", "rrf"):
        values = [r["strategies"][strategy]["metrics"]["nDCG@10"] for r in per_query.values()]
        assert summary["strategies"][strategy]["nDCG@10"]["mean"] == pytest.approx(
            float(np.mean(values)), abs=1e-12
        )


def test_scores_are_raw_cosines_without_rounding(coco, real_run):
    """The text strategy's scores are the float32 cosines numpy computes from stored vectors."""
    from pixseek.search.text_encoder import query_encoder

    from pixseek.config import load_settings
    from pixseek.store import open_store

    settings = load_settings()
    text = query_encoder(settings).encode_text("a dog")
    stored = {p.id: np.asarray(p.vectors["clip"]) for p in _points(open_store(settings))}
    row = _per_query(real_run.out)[f"tie-{coco.stems[0]}"]
    ranking = row["strategies"]["text"]["ranking"]
    assert len(ranking) == len(stored) == 245
    cosines = {i: float(v @ text / np.linalg.norm(v)) for i, v in stored.items()}
    assert all(abs(score - cosines[i]) < 1e-6 for i, score in ranking)
    assert any(round(score, 6) != score for _, score in ranking)  # not rounded to 6 places
    order = sorted(cosines, key=lambda i: -cosines[i])
    assert [i for i, _ in ranking[:20]] == order[:20] or _same_up_to_ties(ranking[:20], cosines)


def _points(store):
    ids = [point.id for point in store.scroll("coco", fields=["source"])]
    return store.retrieve("coco", ids, with_vectors=True)


def _same_up_to_ties(ranking, cosines) -> bool:
    scores = [cosines[i] for i, _ in ranking]
    return all(a >= b - 1e-6 for a, b in zip(scores, scores[1:], strict=False))


def test_single_relevant_queries_have_ap_equal_to_mrr(real_run):
    per_query = _per_query(real_run.out)
    captions = [r for r in per_query.values() if r["query_id"].endswith(("-c0", "-c1", "-c2"))]
    assert captions
    for row in captions:
        assert row["n_relevant"] == 1
        for record in row["strategies"].values():
            assert record["metrics"]["AP"] == record["metrics"]["MRR"]


def test_missing_relevant_items_count_unless_present_only(coco, real_run, tmp_path):
    row = _per_query(real_run.out)["half"]
    assert row["n_relevant"] == 2 and row["relevant_missing"] == ["x.jpg"]
    assert row["strategies"]["text"]["metrics"]["R@300"] == 0.5
    summary = json.loads((real_run.out / "metrics.json").read_text())
    assert summary["relevant_missing"] == 4 and summary["queries_with_missing"] == 4
    assert summary["relevant_missing_counted"] is True
    assert (
        "4 listed relevant items are not in the collection"
        in (real_run.out / "summary.md").read_text()
    )
    with (real_run.out / "per_query.csv").open() as handle:
        lines = {(r["query_id"], r["strategy"]): r for r in csv.DictReader(handle)}
    assert lines[("half", "text")]["relevant_missing"] == "1"

    out = tmp_path / "present"
    code, _, err = coco.run(
        "eval", "-c", "coco", "--queries", real_run.queries, "--strategies", "text",
        "--k", KS, "--depth", DEPTH, "--present-only", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    row = _per_query(out)["half"]
    assert row["n_relevant"] == 1 and row["strategies"]["text"]["metrics"]["R@300"] == 1.0
    assert json.loads((out / "metrics.json").read_text())["relevant_missing_counted"] is False


def test_metrics_json_records_the_settings_in_effect(coco, real_run, tmp_path):
    from pixseek.evaluation.provenance import file_sha256

    settings = json.loads((real_run.out / "metrics.json").read_text())["settings"]
    weights = file_sha256(coco.clip / "open_clip_model.safetensors")
    assert settings["clip"]["weights"].startswith("sha256:") and weights
    assert settings["collection"]["points"] == 245 and settings["pixseek_version"]
    assert settings["text"]["prompt_templates"] and settings["text"]["queries_ensembled"] > 0
    generation = settings["generation"]
    assert generation["n_images"] == 1 and generation["steps"] == 2 and generation["width"] == 32
    assert generation["t2i_weights"].startswith("sha256:") and "rrf_k" in generation
    assert "alpha" not in generation  # no `weighted` strategy ran
    assert settings["queries"]["sha256"] == file_sha256(real_run.queries)

    out = tmp_path / "text-only"
    code, _, err = coco.run(
        "eval", "-c", "coco", "--queries", real_run.queries, "--strategies", "text",
        "--no-ensemble", "--limit", "2", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert "generation" not in settings and settings["strategies"] == ["text"]
    assert settings["text"] == {
        "ensemble": False,
        "queries_ensembled": 0,
        "prompt_templates": [],
        "search_mode": "dense",
    }


SEARCH_QUERIES = [
    "2:dog -:grass",
    "a red bus + 0.5:street",
    "-:cat dog",
    "val2017/000000000139.jpg",  # an image path, relative to the current directory
    "a kitchen -./val2017/000000000139.jpg",
    "a photo of a dog.",
]


def test_text_strategy_ranks_exactly_like_pixseek_search(coco, tmp_path, monkeypatch):
    monkeypatch.chdir(COCO)
    rows = [
        {"id": f"s{i}", "q": q, "relevant": ["val2017/000000000139.jpg"]}
        for i, q in enumerate(SEARCH_QUERIES)
    ]
    rows.append({"id": "verbatim", "query": "2:dog", "relevant": ["val2017/000000000139.jpg"]})
    rows.append(
        {"id": "literal", "q": "2:dog", "ensemble": False, "relevant": ["val2017/000000000139.jpg"]}
    )
    queries = _write(tmp_path / "q.jsonl", rows)
    out = tmp_path / "out"
    code, _, err = coco.run(
        "eval", "-c", "coco", "--queries", queries, "--strategies", "text", "--depth", "50",
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    per_query = _per_query(out)
    for i, q in enumerate(SEARCH_QUERIES):
        code, stdout, err = coco.run("search", *q.split(), "-c", "coco", "--json", "-k", "50")
        assert code == 0, err
        hits = [json.loads(line) for line in stdout.splitlines()]
        ranking = per_query[f"s{i}"]["strategies"]["text"]["ranking"]
        assert [[h["id"], h["score"]] for h in hits] == ranking, q
    code, stdout, _ = coco.run(
        "search", "2:dog", "-c", "coco", "--json", "--no-ensemble", "-k", "50"
    )
    literal = [[h["id"], h["score"]] for h in map(json.loads, stdout.splitlines())]
    assert per_query["literal"]["strategies"]["text"]["ranking"] == literal
    # Verbatim text is embedded as written: "2:dog" is not weight 2 on "dog".
    assert per_query["verbatim"]["strategies"]["text"]["ranking"] != per_query["s0"]["strategies"]
    notes = json.loads((out / "metrics.json").read_text())["notes"]
    assert any("read like a prompt template and are wrapped again" in n for n in notes)


def test_no_template_is_applied_twice(coco, tmp_path):
    from pixseek.evaluation.queries import load_queries, templated_by
    from pixseek.evaluation.runner import ensemble_for
    from pixseek.search.text_encoder import fill_template, query_encoder

    from pixseek.config import load_settings

    encoder = query_encoder(load_settings())
    templates = encoder.templates
    bare, fixed = tmp_path / "bare.jsonl", tmp_path / "fixed.jsonl"
    coco.run("eval-queries", "labels", COCO / "labels.jsonl", "--out", bare)
    coco.run("eval-queries", "labels", COCO / "labels.jsonl", "--out", fixed,
             "--template", "a photo of a {}.")  # fmt: skip
    for query in load_queries(bare):  # the runner wraps the bare label once per template
        assert ensemble_for(query, True, templates)
        expected = [fill_template(t, query.label) for t in templates]
        assert encoder.prompts(query.text, True) == expected
        assert templated_by(query.text, templates) is None
    for query in load_queries(fixed):  # the builder applied the template: nothing more
        assert not ensemble_for(query, True, templates)
        assert encoder.prompts(query.text, False) == [f"a photo of a {query.label}."]
    # Hand-written verbatim text that already is a template is embedded as written.
    rows = [{"id": "t", "query": "a photo of a dog.", "label": "dog"}]
    queries = _write(tmp_path / "templated.jsonl", rows)
    out = tmp_path / "out"
    code, _, err = coco.run("eval", "-c", "coco", "--queries", queries, "--strategies", "text",
                            "--depth", "20", "--out", out)  # fmt: skip
    assert code == 0, err
    code, stdout, _ = coco.run(
        "search", "a photo of a dog.", "-c", "coco", "--json", "--no-ensemble", "-k", "20"
    )
    as_written = [[h["id"], h["score"]] for h in map(json.loads, stdout.splitlines())]
    assert _per_query(out)["t"]["strategies"]["text"]["ranking"] == as_written
    notes = json.loads((out / "metrics.json").read_text())["notes"]
    assert any("not wrapped in the templates again" in n for n in notes)


@pytest.mark.parametrize("query", ["a dog", "dog + cat -:grass"])
def test_a_json_score_used_as_threshold_keeps_that_hit(coco, query):
    code, stdout, err = coco.run("search", *query.split(), "-c", "coco", "--json", "-k", "20")
    assert code == 0, err
    hits = [json.loads(line) for line in stdout.splitlines()]
    last = hits[-1]
    code, stdout, _ = coco.run(
        "search", *query.split(), "-c", "coco", "--json", "-k", "50",
        "--threshold", repr(last["score"]),
    )  # fmt: skip
    kept = [json.loads(line)["id"] for line in stdout.splitlines()]
    assert last["id"] in kept and kept[: len(hits)] == [h["id"] for h in hits][: len(kept)]


def test_query_file_errors_are_one_line(coco, tmp_path):
    cases = [
        ({"query": "x", "q": "y", "label": "dog"}, "exactly one of 'query'"),
        ({"q": "dog -", "label": "dog"}, "ends with"),
        ({"query": "x", "syntax": "magic", "label": "dog"}, "'syntax' must be"),
        ({"query": "x", "relevent": ["a.jpg"]}, "unknown key(s) relevent"),
        ({"query": "x", "label": "dog", "ensemble": "no"}, "'ensemble' must be"),
    ]
    for row, message in cases:
        path = _write(tmp_path / "bad.jsonl", [row])
        code, _, err = coco.run("eval", "-c", "coco", "--queries", path)
        assert code == 2 and message in err and err.count("\n") == 1, (row, err)


def test_models_random_t2i_writes_a_pipeline(coco, tmp_path):
    code, stdout, err = coco.run("models", "random-t2i", tmp_path / "t2i")
    assert code == 0, err
    assert (tmp_path / "t2i" / "model_index.json").is_file()
    assert stdout.strip() == str((tmp_path / "t2i").resolve())
    assert list((tmp_path / "t2i" / "unet").glob("*.safetensors"))
    code, _, err = coco.run("models", "random-t2i", tmp_path / "x", "--arch", "sdxl")
    assert code == 2 and "unknown text-to-image architecture" in err
