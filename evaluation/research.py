"""The research table in one command: does generating a picture of the query help retrieval?

Two settings, as in the generative-retrieval proposal: COCO captions on images with few objects
(where one generated picture can depict the whole scene; each caption has one relevant image),
and Imagenette class names (~390 relevant images each). Every strategy runs on the same queries
through `run_eval`, so each dataset gets the full `pixseek eval` report, and `research.md` /
`research.json` put the headline metrics and the paired differences to `text` side by side.

The run is resumable: ingest is incremental and generated images are cached, so a second run
after an interruption only does what is left.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pixseek.evaluation.queries import EvalQuery, caption_queries, label_queries, prepare_coco
from pixseek.ingest.labels import load_labels
from pixseek.search.fusion import FUSIONS

from pixseek.config import Settings
from pixseek.errors import InputError

if TYPE_CHECKING:  # the runner pulls in torch: planning and --dry-run stay light
    from pixseek.evaluation.runner import EvalRun

HEADLINE = {"coco": ("R@1", "R@10", "MRR"), "imagenette": ("P@10", "AP", "nDCG@10")}
# Assumed, not measured on this project's machines (no GPU here): SD-Turbo, 512 px, 4 steps,
# fp16, batch 4 on one A100-class GPU, and ViT-B-32 ingest there. Pass your own measurement.
SECONDS_PER_IMAGE = 0.15
INGEST_IMAGES_PER_SECOND = 300.0


@dataclass
class Dataset:
    name: str
    collection: str
    root: Path  # the folder to ingest
    labels: Path  # its labels sidecar (CSV or JSONL)
    queries: list[EvalQuery]
    images: list[str]  # relative paths to ingest (all files of the dataset that are used)
    notes: list[str] = field(default_factory=list)
    whole_root: bool = False  # `root` holds exactly `images`: ingest the folder itself


def coco_dataset(
    root: Path,
    max_objects: int = 3,
    instances: Path | None = None,
    captions: Path | None = None,
    workdir: Path | None = None,
) -> Dataset:
    """Caption queries on COCO images with <= max_objects objects.

    With COCO's instances (and captions) files the filter counts annotated objects, exactly as
    `eval-queries prepare-coco`. Without them (coco_mini), it uses the labels sidecar's object
    categories: images with <= max_objects distinct categories, a looser proxy (a picture of
    three dogs has one category), said so in the notes.
    """
    if instances is not None:
        rows, queries = prepare_coco(instances, captions, max_objects, prefix="val2017/")
        if workdir is None:
            raise InputError("preparing COCO annotations needs an output folder")
        labels = workdir / "coco-labels.jsonl"
        labels.parent.mkdir(parents=True, exist_ok=True)
        labels.write_text("".join(json.dumps(row) + "\n" for row in rows))
        images = [row["filename"] for row in rows if (root / row["filename"]).is_file()]
        note = f"COCO images with <= {max_objects} annotated objects ({len(images)} found)"
        return Dataset("coco", "research-coco", root, labels, queries, images, [note])
    labels = root / "labels.jsonl"
    if not labels.is_file():
        raise InputError(
            f"{labels} does not exist; give the coco_mini folder (or --coco-instances)"
        )
    entries = load_labels(labels).entries
    kept = sorted(
        name for name, e in entries.items() if e.labels and len(set(e.labels)) <= max_objects
    )
    chosen = set(kept)
    queries = [q for q in caption_queries(labels) if q.relevant[0] in chosen]
    note = (
        f"COCO images with <= {max_objects} object categories ({len(kept)} of {len(entries)}; "
        "without COCO's instances file categories stand in for object counts)"
    )
    return Dataset("coco", "research-coco", root, labels, queries, kept, [note])


def imagenette_dataset(root: Path) -> Dataset:
    labels = root / "labels.csv"
    if not labels.is_file():
        raise InputError(f"{labels} does not exist; give the imagenette folder")
    images = sorted(load_labels(labels).entries)
    queries = label_queries(labels)  # bare class names: ensembling wraps each once
    note = f"Imagenette class names ({len(queries)} classes, {len(images)} images)"
    return Dataset(
        "imagenette", "research-imagenette", root, labels, queries, images, [note], whole_root=True
    )


def shrink(dataset: Dataset, max_images: int, max_queries: int, workdir: Path) -> Dataset:
    """A smaller copy for dry runs: the first images (spread over labels), as symlinks that keep
    the relative paths, and the first queries that still have a relevant image among them."""
    if max_images <= 0 and max_queries <= 0:
        return dataset
    images = dataset.images
    if max_images > 0:
        by_folder: dict[str, list[str]] = {}
        for image in images:
            by_folder.setdefault(str(PurePosixPath(image).parent), []).append(image)
        spread = [img for group in zip(*by_folder.values(), strict=False) for img in group]
        images = sorted(spread[:max_images]) if len(spread) >= max_images else images[:max_images]
        folder = workdir / f"{dataset.name}-subset"
        for image in images:
            link = folder / image
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink((dataset.root / image).resolve(), link)
        root = folder
    else:
        root = dataset.root
    present = set(images)
    queries = [q for q in dataset.queries if q.label is not None or set(q.relevant) & present]
    if max_queries > 0:
        queries = queries[:max_queries]
    note = f"shrunk to {len(images)} images and {len(queries)} queries (a dry run, not results)"
    return Dataset(
        dataset.name,
        dataset.collection,
        root,
        dataset.labels,
        queries,
        images,
        [*dataset.notes, note],
        whole_root=max_images > 0 or dataset.whole_root,
    )


def plan(
    datasets: Sequence[Dataset],
    strategies: Sequence[str],
    n_images: int,
    seconds_per_image: float = SECONDS_PER_IMAGE,
    ingest_rate: float = INGEST_IMAGES_PER_SECOND,
) -> dict[str, Any]:
    """What a run does, and how long it should take on a GPU (an estimate: see the constants)."""
    generative = any(s in FUSIONS and s != "text" for s in strategies)  # search modes: none
    rows = []
    for d in datasets:
        generated = len(d.queries) * n_images if generative else 0
        seconds = generated * seconds_per_image + len(d.images) / ingest_rate
        rows.append(
            {
                "dataset": d.name,
                "collection": d.collection,
                "images_to_ingest": len(d.images),
                "queries": len(d.queries),
                "searches": len(d.queries) * len(strategies),
                "images_to_generate": generated,
                "estimated_seconds": round(seconds, 1),
            }
        )
    return {
        "strategies": list(strategies),
        "n_images": n_images,
        "datasets": rows,
        "estimated_seconds": round(sum(r["estimated_seconds"] for r in rows), 1),
        "assumptions": {
            "seconds_per_generated_image": seconds_per_image,
            "ingest_images_per_second": ingest_rate,
        },
    }


def plan_text(planned: dict[str, Any]) -> str:
    lines = [
        "| dataset | images to ingest | queries | searches | images to generate | est. time |",
        "|---|---|---|---|---|---|",
    ]
    for r in planned["datasets"]:
        lines.append(
            f"| {r['dataset']} | {r['images_to_ingest']} | {r['queries']} | {r['searches']} | "
            f"{r['images_to_generate']} | {_duration(r['estimated_seconds'])} |"
        )
    a = planned["assumptions"]
    lines += [
        "",
        f"Expected run time: about {_duration(planned['estimated_seconds'])} on one GPU, at "
        f"{a['seconds_per_generated_image']} s per generated image and "
        f"{a['ingest_images_per_second']:g} images/s ingest (assumed; measure yours with "
        "`python -m bench.generate --mode real` and pass --seconds-per-image). Re-runs reuse "
        "the ingested collections and the cached images.",
    ]
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def ingest(settings: Settings, dataset: Dataset) -> dict[str, Any]:
    """Ingest the dataset's images (incremental: a re-run skips what is stored)."""
    from pixseek.ingest.pipeline import IngestOptions, run_ingest

    from pixseek.models.bundle import load_image_embedders
    from pixseek.store import open_store

    options = IngestOptions(
        collection=dataset.collection,
        labels=load_labels(dataset.labels),
        batch_size=settings.batch_size,
        decode_workers=settings.decode_workers,
        max_pixels=settings.max_image_pixels,
    )
    store = open_store(settings)
    try:
        if dataset.whole_root:
            paths = [str(dataset.root)]
        else:
            paths = [str(dataset.root / image) for image in dataset.images]
        summary = run_ingest(store, load_image_embedders(settings), paths, options)
    finally:
        store.close()
    return {"added": summary.added, "skipped": summary.skipped, "failed": len(summary.failed)}


def research_table(runs: dict[str, EvalRun]) -> tuple[str, dict[str, Any]]:
    """research.md and research.json: headline metrics and paired differences to `text`."""
    lines = ["# Does generating a picture of the query help?", ""]
    data: dict[str, Any] = {}
    for name, run in runs.items():
        summary = run.summary()
        metrics = HEADLINE.get(name, ("R@10", "AP", "MRR"))
        data[name] = {
            "queries": summary["queries_evaluated"],
            "metrics": list(metrics),
            "strategies": {
                s: {m: summary["strategies"][s][m] for m in metrics} for s in run.strategies
            },
            "versus_text": {
                s: {m: v[m] for m in metrics} for s, v in summary["versus_text"].items()
            },
            "notes": summary["notes"],
        }
        lines += [
            f"## {name}: {summary['queries_evaluated']} queries",
            "",
            "| strategy | "
            + " | ".join(metrics)
            + " | "
            + " | ".join(f"Δ{m}" for m in metrics)
            + " |",
            "|---|" + "---|" * (2 * len(metrics)),
        ]
        for s in run.strategies:
            cells = [_cell(summary["strategies"][s][m]) for m in metrics]
            if s in summary["versus_text"]:
                cells += [_cell(summary["versus_text"][s][m], signed=True) for m in metrics]
            else:
                cells += ["baseline"] * len(metrics)
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines += ["", *[f"- {note}" for note in summary["notes"]], ""]
    lines.append(
        "Mean with 95% bootstrap interval over queries; Δ = paired difference to `text` on the "
        "same queries (an interval above 0 means generation helped). Full reports: "
        "<dataset>/summary.md, report.html."
    )
    return "\n".join(lines) + "\n", data


def _cell(estimate: dict[str, float], signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    low, high = fmt.format(estimate["ci_low"]), fmt.format(estimate["ci_high"])
    return f"{fmt.format(estimate['mean'])} [{low}, {high}]"


def run_research(
    settings: Settings,
    datasets: Sequence[Dataset],
    strategies: list[str],
    ks: list[int],
    out: Path,
    n_images: int = 4,
    depth: int = 1000,
    seed: int = 0,
    alpha: float = 0.5,
    show_k: int = 10,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Path]:
    from pixseek.evaluation.queries import write_queries
    from pixseek.evaluation.report import write_all
    from pixseek.evaluation.runner import run_eval

    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, EvalRun] = {}
    for dataset in datasets:
        folder = out / dataset.name
        folder.mkdir(parents=True, exist_ok=True)
        write_queries(dataset.queries, folder / "queries.jsonl")
        ingested = ingest(settings, dataset)
        run = run_eval(
            settings,
            dataset.collection,
            dataset.queries,
            strategies,
            ks,
            n_images=n_images,
            depth=depth,
            alpha=alpha,
            seed=seed,
            on_progress=(lambda d, t, n=dataset.name: on_progress(n, d, t))
            if on_progress
            else None,
            queries_source={"file": str(folder / "queries.jsonl"), "dataset": dataset.name},
        )
        run.notes[:0] = [*dataset.notes, f"ingest: {ingested}"]
        write_all(run, folder, show_k)
        runs[dataset.name] = run
    text, data = research_table(runs)
    paths = {"table": out / "research.md", "json": out / "research.json"}
    paths["table"].write_text(text)
    paths["json"].write_text(json.dumps(data, indent=2) + "\n")
    return paths
