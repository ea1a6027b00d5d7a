"""The simulated relevance-feedback round on coco_mini and Imagenette (`pixseek eval
--feedback-round 10`): AP and nDCG before and after one round of marks, per strategy.

No CLIP weights can be downloaded here, so the model is a random-weight ViT-B-32: text queries
carry no meaning (the `before` numbers are chance level), while image-to-image similarity keeps
some low-level structure (colour, layout). What the round measures is the mechanism: how far the
marks move the relevant images, through the same code path as `pixseek search --good/--bad`.

    python -m bench.feedback            # writes bench/results/feedback.md and feedback.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._common import DATASETS, RESULTS, cpu, load

SETS = {
    "coco_mini": (DATASETS / "coco_mini", "labels.jsonl"),
    "imagenette": (DATASETS / "imagenette", "labels.csv"),
}


def _pixseek(env: dict[str, str], *args: object) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pixseek", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"pixseek {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def main() -> None:
    from pixseek.models.random_weights import write_random_clip

    work = Path(tempfile.mkdtemp(prefix="pixseek-feedback-"))
    model = write_random_clip(work / "model", "ViT-B-32", seed=0)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")},
        "PIXSEEK_DATA_DIR": str(work / "data"),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{model}",
        "HF_HUB_OFFLINE": "1",
    }
    results: dict[str, object] = {"machine": {**cpu(), "load": load()}, "sets": {}}
    sections = []
    for name, (folder, labels) in SETS.items():
        _pixseek(env, "ingest", folder, "--labels", folder / labels, "-c", name, "--json")
        queries = work / f"{name}.jsonl"
        _pixseek(env, "eval-queries", "labels", folder / labels, "--out", queries)
        out = work / f"eval-{name}"
        _pixseek(
            env, "eval", "-c", name, "--queries", queries, "--strategies", "text",
            "--k", "10", "--out", out, "--feedback-round", "10",
        )  # fmt: skip
        metrics = json.loads((out / "metrics.json").read_text())
        results["sets"][name] = {  # type: ignore[index]
            "queries": metrics["queries_evaluated"],
            "feedback": metrics["feedback"],
        }
        summary = (out / "summary.md").read_text()
        table = summary[summary.index("Simulated feedback round") :].split("\n- ")[0]
        sections.append(f"## {name} ({metrics['queries_evaluated']} label queries)\n\n{table}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "feedback.json").write_text(json.dumps(results, indent=2) + "\n")
    machine = results["machine"]
    header = (
        "# Simulated relevance-feedback round (`pixseek eval --feedback-round 10`)\n\n"
        "Model: random-weight ViT-B-32 (no CLIP weights can be downloaded here), so the text "
        "query is at chance level and the numbers measure the feedback mechanism: the relevant "
        "hits of each query's top 10 are marked good, the others bad, and the query re-runs "
        "with Rocchio's weights (search/engine.py). `full` is the re-ranked list the user sees; "
        "`residual` leaves the judged top 10 out of both lists (what the round newly finds).\n\n"
        f"Machine: {machine['cpu']}, {machine['cpus']} cores, load {machine['load']}. "
        "Re-run: `python -m bench.feedback`.\n"
    )
    (RESULTS / "feedback.md").write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print((RESULTS / "feedback.md").read_text())


if __name__ == "__main__":
    main()
