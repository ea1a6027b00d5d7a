"""Evaluation outputs: metrics.json, per_query.csv/.jsonl, summary.md, metrics_vs_k.png, report.html.

Numbers in metrics.json, per_query.csv and per_query.jsonl carry full float precision (Python's
shortest round-trip form); only summary.md and the HTML page round, for reading.
per_query.jsonl also holds every ranking (ids and raw scores), so any metric can be recomputed
independently.

The HTML report is for people: per query the generated reference images and each strategy's
top-k thumbnails with relevant hits outlined, sortable by how much generation helped or hurt.
Thumbnails and generated images are copied next to it (thumbs/, generated/), so the folder can be
zipped and shared, and every image the page references exists.
"""

from __future__ import annotations

import csv
import html
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pixseek.evaluation.feedback import markdown as feedback_markdown
from pixseek.evaluation.runner import EvalRun

from pixseek.media import read_image_bytes, thumbnail_jpeg

THUMB_PX = 160
HEADLINE = ("R@{k}", "P@{k}", "nDCG@{k}")


def write_all(run: EvalRun, out: Path, show_k: int) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / "metrics.json",
        "per_query": out / "per_query.csv",
        "per_query_jsonl": out / "per_query.jsonl",
        "summary": out / "summary.md",
        "plot": out / "metrics_vs_k.png",
        "report": out / "report.html",
    }
    paths["metrics"].write_text(json.dumps(run.summary(), indent=2) + "\n")
    write_per_query_csv(run, paths["per_query"])
    write_per_query_jsonl(run, paths["per_query_jsonl"])
    paths["summary"].write_text(summary_markdown(run))
    plot_metrics(run, paths["plot"])
    paths["report"].write_text(report_html(run, out, show_k))
    return paths


def write_per_query_csv(run: EvalRun, path: Path) -> None:
    names = run.metric_names()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["query_id", "query", "syntax", "strategy", "n_relevant"]
        writer.writerow([*header, "relevant_present", "relevant_missing", *names])
        for result in run.results:
            for strategy in run.strategies:
                values = result.metrics.get(strategy, {})
                writer.writerow(
                    [
                        result.query.id,
                        result.query.text,
                        result.query.syntax,
                        strategy,
                        result.n_relevant,
                        len(result.relevance.present),
                        len(result.relevance.missing),
                        *(repr(values[n]) if n in values else "" for n in names),
                    ]
                )


def write_per_query_jsonl(run: EvalRun, path: Path) -> None:
    """One line per query: relevance, and per strategy the ranking and its metrics."""
    with path.open("w", encoding="utf-8") as handle:
        for result in run.results:
            row = {
                "query_id": result.query.id,
                "query": result.query.as_json(),
                "n_relevant": result.n_relevant,
                "relevant_present": sorted(result.relevance.present),
                "relevant_missing": result.relevance.missing,
                "strategies": {
                    strategy: {
                        "ranking": result.rankings[strategy],
                        "metrics": result.metrics[strategy],
                    }
                    for strategy in run.strategies
                    if strategy in result.rankings
                },
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def summary_markdown(run: EvalRun) -> str:
    summary = run.summary()
    columns = [m.format(k=k) for k in run.ks for m in HEADLINE] + ["AP", "MRR"]
    lines = [
        f"# Evaluation: {summary['collection']}",
        "",
        f"{summary['queries_evaluated']} queries evaluated "
        f"({summary['queries_without_relevant']} without relevant items left out); "
        "mean with 95% bootstrap interval over queries. `AP` is mean average precision (mAP). "
        + (
            f"{summary['relevant_missing']} listed relevant items are not in the collection "
            + (
                "and count as not found."
                if summary["relevant_missing_counted"]
                else "and are left out (--present-only)."
            )
            if summary["relevant_missing"]
            else "Every listed relevant item is in the collection."
        ),
        "",
        "| strategy | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for strategy, metrics in summary["strategies"].items():
        cells = [_cell(metrics[c]) for c in columns]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    if summary["versus_text"]:
        lines += ["", "Paired difference to `text` (same queries):", ""]
        lines += ["| strategy | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for strategy, metrics in summary["versus_text"].items():
            cells = [_cell(metrics[c], signed=True) for c in columns]
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    if summary.get("feedback"):
        lines += feedback_markdown(summary["feedback"], run.feedback_k)
    notes = summary.get("notes") or []
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def _cell(estimate: dict[str, float], signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return (
        f"{fmt.format(estimate['mean'])} "
        f"[{fmt.format(estimate['ci_low'])}, {fmt.format(estimate['ci_high'])}]"
    )


def plot_metrics(run: EvalRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = run.summary()["strategies"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for axis, template in zip(axes, HEADLINE, strict=True):
        for strategy, metrics in summary.items():
            means = [metrics[template.format(k=k)]["mean"] for k in run.ks]
            lows = [metrics[template.format(k=k)]["ci_low"] for k in run.ks]
            highs = [metrics[template.format(k=k)]["ci_high"] for k in run.ks]
            axis.plot(run.ks, means, marker="o", label=strategy)
            axis.fill_between(run.ks, lows, highs, alpha=0.15)
        axis.set_title(template.format(k="k"))
        axis.set_xlabel("k")
        axis.set_xscale("log") if max(run.ks) / max(min(run.ks), 1) >= 20 else None
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{run.collection}: {len(run.evaluated())} queries")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _thumb(payload: dict[str, Any], point_id: str, folder: Path) -> str | None:
    target = folder / f"{point_id}.jpg"
    if not target.exists():
        data = read_image_bytes(payload)
        thumbnail = None if data is None else thumbnail_jpeg(data, THUMB_PX)
        if thumbnail is None:
            return None
        target.write_bytes(thumbnail)
    return f"{folder.name}/{target.name}"


def _copy_generated(paths: Sequence[str], folder: Path) -> list[str]:
    copied = []
    for path in paths:
        source = Path(path)
        if source.is_file():
            target = folder / source.name
            if not target.exists():
                shutil.copyfile(source, target)
            copied.append(f"{folder.name}/{target.name}")
    return copied


def report_html(run: EvalRun, out: Path, show_k: int) -> str:
    thumbs, generated = out / "thumbs", out / "generated"
    thumbs.mkdir(exist_ok=True)
    generated.mkdir(exist_ok=True)
    gain_strategy = run.best_generative_strategy()
    blocks = []
    for index, result in enumerate(run.evaluated()):
        delta = result.delta("AP", gain_strategy) if gain_strategy else 0.0
        images = "".join(
            f'<img class="gen" src="{html.escape(p)}" alt="generated">'
            for p in _copy_generated(result.generated_images, generated)
        )
        rows = []
        for strategy in run.strategies:
            cells = []
            for rank, (point_id, score) in enumerate(result.rankings[strategy][:show_k], 1):
                payload = result.payloads.get(point_id, {})
                src = _thumb(payload, point_id, thumbs)
                mark = "hit" if point_id in result.relevant else "miss"
                title = html.escape(f"#{rank} {score:.3f} {payload.get('source', point_id)}")
                body = f'<img src="{html.escape(src)}">' if src else "?"
                cells.append(f'<figure class="{mark}" title="{title}">{body}</figure>')
            ap = result.metrics[strategy]["AP"]
            rows.append(
                f'<div class="row"><span class="name">{html.escape(strategy)}'
                f"<br><small>AP {ap:.3f}</small></span>{''.join(cells)}</div>"
            )
        blocks.append(
            f'<section data-order="{index}" data-delta="{delta:.6f}">'
            f"<h3>{html.escape(result.query.text)} <small>({len(result.relevant)} relevant"
            f"{f', {len(result.relevance.missing)} missing' if result.relevance.missing else ''}; "
            f"AP change with {html.escape(gain_strategy or '-')}: {delta:+.3f})</small></h3>"
            f'<div class="gens">{images or "<em>no generated images</em>"}</div>'
            f"{''.join(rows)}</section>"
        )
    return _PAGE.format(
        title=html.escape(f"pixseek evaluation: {run.collection}"),
        summary=html.escape(summary_markdown(run)),
        blocks="\n".join(blocks),
    )


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>
body{{font-family:sans-serif;margin:1em;background:#fafafa}}
section{{background:#fff;border:1px solid #ddd;margin:1em 0;padding:.5em}}
figure{{display:inline-block;margin:2px;border:4px solid #ccc}}
figure.hit{{border-color:#1a9c3a}} figure img,img.gen{{height:96px;display:block}}
img.gen{{display:inline-block;margin:2px;border:4px solid #6a5acd}}
.row{{display:flex;align-items:center}} .name{{width:9em;flex:none}}
pre{{background:#fff;border:1px solid #ddd;padding:.5em;overflow:auto}}
</style></head><body><h1>{title}</h1>
<p>Green frames: relevant hits. Purple: images generated from the query.
Sort: <button onclick="sortBy('delta',-1)">generation helped most</button>
<button onclick="sortBy('delta',1)">generation hurt most</button>
<button onclick="sortBy('order',1)">query order</button></p>
<details><summary>Summary table</summary><pre>{summary}</pre></details>
<img src="metrics_vs_k.png" alt="metrics vs k" style="max-width:100%">
<div id="queries">{blocks}</div>
<script>
function sortBy(key, dir) {{
  const box = document.getElementById('queries');
  [...box.children].sort((a, b) => dir * (a.dataset[key] - b.dataset[key]))
    .forEach(el => box.appendChild(el));
}}
</script></body></html>
"""
