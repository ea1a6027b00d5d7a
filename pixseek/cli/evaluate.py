"""`pixseek eval` (strategies side by side) and `pixseek eval-queries` (query-file builders)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from pixseek.cli.context import settings_from


@click.command("eval")
@click.option("--collection", "-c", required=True, help="Collection to evaluate on.")
@click.option("--queries", "queries_file", required=True, type=click.Path(), help="Queries JSONL.")
@click.option(
    "--strategies",
    default="text,generated,text+mean,rrf",
    show_default=True,
    help="Comma-separated: text, generated, text+mean, weighted, rrf.",
)
@click.option("--k", "ks", default="1,5,10", show_default=True, help="Cut-offs for @k metrics.")
@click.option("--out", "out_dir", default="eval-out", show_default=True, type=click.Path())
@click.option("--n-images", default=4, show_default=True, type=click.IntRange(1, 16))
@click.option("--alpha", default=0.5, show_default=True, help="Text share for `weighted`.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--depth", default=100, show_default=True, type=click.IntRange(1, 1000))
@click.option("--limit", "max_queries", default=0, type=int, help="Use only the first N queries.")
@click.option("--show-k", default=10, show_default=True, help="Thumbnails per strategy in HTML.")
@click.option(
    "--present-only",
    is_flag=True,
    help="Restrict each query's relevant items to those in the collection (default: listed "
    "items missing from the collection count as not found, as trec_eval counts its qrels).",
)
@click.option("--no-ensemble", is_flag=True, help="Embed query text without prompt templates.")
@click.option(
    "--feedback-round",
    "feedback_k",
    default=0,
    type=click.IntRange(min=0),
    metavar="K",
    help="Also simulate one relevance-feedback round: mark each query's top K (relevant good, "
    "others bad), re-run, report AP/nDCG before and after per strategy.",
)
@click.pass_context
def eval_command(
    ctx: click.Context,
    collection: str,
    queries_file: str,
    strategies: str,
    ks: str,
    out_dir: str,
    n_images: int,
    alpha: float,
    seed: int,
    depth: int,
    max_queries: int,
    show_k: int,
    present_only: bool,
    no_ensemble: bool,
    feedback_k: int,
) -> None:
    """Recall@k, Precision@k, mAP, nDCG@k and MRR for each strategy on the same queries.

    Writes metrics.json, per_query.csv, per_query.jsonl, summary.md, metrics_vs_k.png and
    report.html to --out.
    """
    from pixseek.evaluation.provenance import file_sha256
    from pixseek.evaluation.queries import load_queries
    from pixseek.evaluation.report import write_all
    from pixseek.evaluation.runner import parse_ks, parse_strategies, run_eval
    from pixseek.search.text_encoder import warm_text_model

    settings = settings_from(ctx)
    chosen = parse_strategies(strategies)
    cutoffs = parse_ks(ks)
    queries = load_queries(Path(queries_file))
    warm_text_model(settings)  # a batch command: the text tower is ready before the first query
    if max_queries > 0:
        queries = queries[:max_queries]
    run = run_eval(
        settings,
        collection,
        queries,
        chosen,
        cutoffs,
        n_images=n_images,
        depth=depth,
        alpha=alpha,
        seed=seed,
        count_missing=not present_only,
        ensemble=not no_ensemble,
        on_progress=_progress(len(queries)),
        queries_source={
            "file": str(Path(queries_file).resolve()),
            "sha256": file_sha256(Path(queries_file)),
            "limit": max_queries or None,
        },
        feedback_k=feedback_k,
    )
    paths = write_all(run, Path(out_dir), show_k)
    click.echo(paths["summary"].read_text())
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


def _progress(total: int):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="query", file=sys.stderr)

    def update(done: int, _: int) -> None:
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update


@click.group("eval-queries")
def eval_queries_command() -> None:
    """Build evaluation query files from labelled datasets."""


@eval_queries_command.command("captions")
@click.argument("labels_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--limit", default=0, type=int, help="Keep the first N queries.")
def captions_command(labels_file: str, out: str, limit: int) -> None:
    """Each caption is a query; its one relevant item is the image it describes (COCO)."""
    from pixseek.evaluation.queries import caption_queries, write_queries

    count = write_queries(caption_queries(Path(labels_file), limit), Path(out))
    click.echo(f"wrote {count} caption queries to {out}")


@eval_queries_command.command("labels")
@click.argument("labels_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--template",
    default=None,
    help='Write the query as this template filled in (e.g. "a photo of a {}."), marked '
    '"ensemble": false so prompt ensembling does not wrap it again.',
)
@click.option("--bare", is_flag=True, help="The bare label (the default; kept for old scripts).")
def labels_command(labels_file: str, out: str, template: str | None, bare: bool) -> None:
    """One query per class (COCO categories, Imagenette classes); all its images relevant.

    The query is the bare label: eval's prompt ensembling applies the templates to it once.
    """
    from pixseek.errors import InputError
    from pixseek.evaluation.queries import label_queries, write_queries

    if bare and template:
        raise InputError("--bare and --template exclude each other")
    count = write_queries(label_queries(Path(labels_file), template), Path(out))
    click.echo(f"wrote {count} label queries to {out}")


@eval_queries_command.command("prepare-coco")
@click.option("--instances", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--captions", type=click.Path(exists=True, dir_okay=False))
@click.option("--max-objects", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--prefix", default="", help='Prepended to file names, e.g. "val2017/".')
@click.option("--labels-out", required=True, type=click.Path(dir_okay=False))
@click.option("--queries-out", required=True, type=click.Path(dir_okay=False))
def prepare_coco_command(
    instances: str,
    captions: str | None,
    max_objects: int,
    prefix: str,
    labels_out: str,
    queries_out: str,
) -> None:
    """COCO annotations -> labels JSONL + caption queries, keeping images with <= N objects."""
    from pixseek.evaluation.queries import prepare_coco, write_queries

    rows, queries = prepare_coco(
        Path(instances), Path(captions) if captions else None, max_objects, prefix
    )
    Path(labels_out).parent.mkdir(parents=True, exist_ok=True)
    with Path(labels_out).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    count = write_queries(queries, Path(queries_out))
    click.echo(f"kept {len(rows)} images with <= {max_objects} objects; {count} queries")


@click.command("eval-research")
@click.option(
    "--datasets",
    "datasets_dir",
    default="../shared/datasets",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder holding coco_mini/ and imagenette/.",
)
@click.option("--coco", "coco_dir", type=click.Path(file_okay=False), help="COCO image folder.")
@click.option("--imagenette", "inet_dir", type=click.Path(file_okay=False), help="Imagenette.")
@click.option(
    "--coco-instances",
    type=click.Path(exists=True, dir_okay=False),
    help="COCO instances_val2017.json: count annotated objects (images under --coco/val2017).",
)
@click.option("--coco-captions", type=click.Path(exists=True, dir_okay=False))
@click.option("--max-objects", default=3, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--only", type=click.Choice(["coco", "imagenette"]), help="Run one of the two datasets."
)
@click.option("--strategies", default="text,generated,text+mean,weighted,rrf", show_default=True)
@click.option("--k", "ks", default="1,5,10,100", show_default=True)
@click.option("--depth", default=1000, show_default=True, type=click.IntRange(1, 1000))
@click.option("--n-images", default=4, show_default=True, type=click.IntRange(1, 16))
@click.option("--alpha", default=0.5, show_default=True, help="Text share for `weighted`.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out_dir", default="research-out", show_default=True, type=click.Path())
@click.option("--max-images", default=0, type=int, help="Dry runs: use only N images per dataset.")
@click.option(
    "--limit", "max_queries", default=0, type=int, help="Dry runs: N queries per dataset."
)
@click.option(
    "--seconds-per-image",
    type=click.FloatRange(min=0.0),
    help="Your GPU's generation time per image, for the run-time estimate.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and the expected run time only.")
@click.pass_context
def eval_research_command(
    ctx: click.Context,
    datasets_dir: str,
    coco_dir: str | None,
    inet_dir: str | None,
    coco_instances: str | None,
    coco_captions: str | None,
    max_objects: int,
    only: str | None,
    strategies: str,
    ks: str,
    depth: int,
    n_images: int,
    alpha: float,
    seed: int,
    out_dir: str,
    max_images: int,
    max_queries: int,
    seconds_per_image: float | None,
    dry_run: bool,
) -> None:
    """The research table in one go: text vs generated vs fused retrieval on COCO captions
    (images with <= 3 objects) and on Imagenette classes.

    Ingests both datasets into `research-coco` / `research-imagenette` (incremental), runs
    `pixseek eval` on each, and writes OUT/research.md and research.json beside each
    dataset's full report. Use real weights on a GPU machine for real answers.
    """
    from pixseek.evaluation import research
    from pixseek.evaluation.runner import parse_ks, parse_strategies

    chosen = parse_strategies(strategies)
    cutoffs = parse_ks(ks)
    out = Path(out_dir)
    base = Path(datasets_dir)
    datasets = []
    if only in (None, "coco"):
        datasets.append(
            research.coco_dataset(
                Path(coco_dir) if coco_dir else base / "coco_mini",
                max_objects,
                Path(coco_instances) if coco_instances else None,
                Path(coco_captions) if coco_captions else None,
                workdir=out,
            )
        )
    if only in (None, "imagenette"):
        datasets.append(
            research.imagenette_dataset(Path(inet_dir) if inet_dir else base / "imagenette")
        )
    if max_images > 0 or max_queries > 0:
        datasets = [research.shrink(d, max_images, max_queries, out / "subsets") for d in datasets]
    planned = research.plan(
        datasets, chosen, n_images, seconds_per_image or research.SECONDS_PER_IMAGE
    )
    click.echo(research.plan_text(planned))
    if dry_run:
        return
    from pixseek.search.text_encoder import warm_text_model

    warm_text_model(settings_from(ctx))  # as `pixseek eval`
    paths = research.run_research(
        settings_from(ctx),
        datasets,
        chosen,
        cutoffs,
        out,
        n_images=n_images,
        depth=depth,
        seed=seed,
        alpha=alpha,
        on_progress=_dataset_progress(),
    )
    click.echo(paths["table"].read_text())
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


def _dataset_progress():
    if not sys.stderr.isatty():
        return None
    bars: dict[str, Any] = {}

    def update(name: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = bars.setdefault(name, tqdm(total=total, unit="query", desc=name, file=sys.stderr))
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update
