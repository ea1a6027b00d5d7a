"""`pixseek search`: the command-line entry point of the search stage."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from pixseek.cli.context import settings_from, where_option
from pixseek.cli.generate import generation_options

# rclip-style terms that start with a dash: `-:grass`, `-2:grass`, `-./dog.jpg`, `-/abs/dog.jpg`.
_DASH_TERM = re.compile(r"^[+-]((\d+(\.\d*)?|\.\d+)?:|\.{1,2}[/\\]|/|~/)")


class SearchCommand(click.Command):
    """Lets negative query terms through: click would take `-:grass` for an unknown option.

    Every positional word (and every dash-term) is moved behind `--`, in its original order, so
    the rclip-style parser sees the query exactly as typed; options and their values stay put.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for param in self.params
            if isinstance(param, click.Option) and not param.is_flag and not param.count
            for name in (*param.opts, *param.secondary_opts)
        }
        # `--diverse [LAMBDA]`: its value is optional, so a query word after it stays a word.
        optional_value = {
            name
            for param in self.params
            if isinstance(param, click.Option) and getattr(param, "_flag_needs_value", False)
            for name in param.opts
        }
        options: list[str] = []
        words: list[str] = []
        index = 0
        while index < len(args):
            token = args[index]
            if token == "--":
                words.extend(args[index + 1 :])
                break
            if token.startswith("-") and len(token) > 1 and not _DASH_TERM.match(token):
                options.append(token)
                if token in optional_value and not _is_number(args[index + 1 : index + 2]):
                    pass
                elif token in takes_value and index + 1 < len(args):
                    options.append(args[index + 1])
                    index += 1
            else:
                words.append(token)
            index += 1
        return super().parse_args(ctx, [*options, "--", *words] if words else options)


def _is_number(tokens: list[str]) -> bool:
    try:
        float(tokens[0])
    except (IndexError, ValueError):
        return False
    return True


@click.command("search", cls=SearchCommand)
@click.argument("query", nargs=-1)
@click.option("--collection", "-c", required=True, help="Collection to search.")
@click.option(
    "--image",
    "-i",
    "images",
    multiple=True,
    metavar="PATH",
    help="Example image (repeatable); prefix '-:' to push results away from it.",
)
@click.option(
    "--like",
    "likes",
    multiple=True,
    metavar="POINT_ID",
    help="Stored point as example, 'more like this' (repeatable); '-:ID' = less like this.",
)
@click.option(
    "--modify",
    metavar="TEXT",
    help="Composed query: change the one reference (--image or --like) by this text.",
)
@click.option(
    "--modify-weight",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.5,
    show_default=True,
    help="The text's share lambda in the composed query vector.",
)
@click.option(
    "--good",
    "goods",
    multiple=True,
    metavar="POINT_ID",
    help="Relevance feedback: a result that is right (repeatable); re-ranks towards it.",
)
@click.option(
    "--bad",
    "bads",
    multiple=True,
    metavar="POINT_ID",
    help="Relevance feedback: a result that is wrong (repeatable); re-ranks away from it.",
)
@click.option(
    "--diverse",
    "diversity",
    type=click.FloatRange(0.0, 1.0),
    is_flag=False,
    flag_value=0.5,
    metavar="[LAMBDA]",
    help="Diverse results (Qdrant MMR): 0 = relevance order, 1 = most diverse; default 0.5.",
)
@click.option(
    "--cutoff",
    metavar="gap:M|z:Z",
    help="End the list per query: gap:0.05 drops scores below top - 0.05; z:3 keeps scores "
    "3 standard deviations above the collection's background.",
)
@click.option("--limit", "-k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many results.")
@where_option()
@click.option(
    "--threshold", type=click.FloatRange(-1.0, 1.0), help="Drop results below this cosine score."
)
@click.option("--no-ensemble", is_flag=True, help="Embed query text as typed, without templates.")
@click.option(
    "--collapse",
    type=click.Choice(["near"]),
    help="One result per near-duplicate group (perceptual hash), with the group's size.",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "dense", "keyword", "hybrid"]),
    default="auto",
    show_default=True,
    help="dense: CLIP; keyword: BM25 over OCR text, captions, labels and file names; hybrid: "
    "both fused in one query; auto: hybrid for plain text on collections with OCR text.",
)
@click.option(
    "--hybrid-fusion",
    type=click.Choice(["rrf", "dbsf"]),
    default="rrf",
    show_default=True,
    help="How hybrid mode fuses the two rankings: reciprocal rank or distribution-based.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per result.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write a self-contained HTML contact sheet with thumbnails.",
)
# -- generative search (worker/cli.py): --generate [--n-images N] [--fusion F] [--alpha A] [--seed S]
@click.option(
    "--generate",
    is_flag=True,
    help="Visualize, then retrieve: generate images from the text with a diffusion model and "
    "search with them too (queued on a GPU worker when PIXSEEK_BROKER_URL is set).",
)
@generation_options(full=False)
# -- end generative search
@click.pass_context
def search_command(
    ctx: click.Context,
    query: tuple[str, ...],
    collection: str,
    images: tuple[str, ...],
    likes: tuple[str, ...],
    goods: tuple[str, ...],
    bads: tuple[str, ...],
    diversity: float | None,
    cutoff: str | None,
    modify: str | None,
    modify_weight: float,
    limit: int,
    offset: int,
    wheres: tuple[str, ...],
    threshold: float | None,
    no_ensemble: bool,
    collapse: str | None,
    mode: str,
    hybrid_fusion: str,
    as_json: bool,
    html_path: str | None,
    generate: bool = False,
    **generation: Any,  # --n-images, --fusion, --alpha, --seed (used with --generate)
) -> None:
    """Find images by text, example images, stored points, or a mix.

    \b
    QUERY words follow rclip:  red car | horse + stripes | apple - fruit
      2:dog -:grass           weight 2 for dog, push away from grass
      ./cat.jpg  -./dog.jpg   image files (relative paths start with ./)
    Composed: --image ref.jpg --modify 'at night' [--modify-weight 0.5]
    Text in images: 'ocr:"exit 12"' or 'text:"exit 12"' (keyword terms).
    Scores are cosine similarities to the query (dense mode).
    """
    from pixseek.search.query import QueryInput, build_query

    if generate:  # -- generative search: delegated to worker/cli.py
        from pixseek.cli.generate import search_generate

        ignored = {
            "image": images,
            "like": likes,
            "modify": modify,
            "offset": offset,
            "good": goods,
            "bad": bads,
            "cutoff": cutoff,
        }
        search_generate(
            ctx,
            query,
            collection,
            ignored,
            as_json,
            html_path,
            limit=limit,
            wheres=wheres,
            threshold=threshold,
            ensemble=not no_ensemble,
            diversity=diversity,
            **generation,
        )
        return
    settings = settings_from(ctx)
    spec = build_query(
        QueryInput(
            words=query,
            images=images,
            likes=likes,
            modify=modify,
            modify_weight=modify_weight,
            ensemble=not no_ensemble,
            good=goods,
            bad=bads,
        )
    )
    if spec.texts and mode != "keyword":  # open the text model while the store loads
        from pixseek.search.text_encoder import warm_text_model

        warm_text_model(settings, spec.texts, spec.ensemble, one_query=True)
    from pixseek.search.cutoff import parse_cutoff
    from pixseek.search.engine import search_page
    from pixseek.search.text_encoder import query_encoder
    from pixseek.store import open_store

    flt = None
    if wheres:  # the filter types import qdrant_client (~0.8 s): only when there is a filter
        from pixseek.search.filters import compile_filters

        flt = compile_filters(wheres)
    store = open_store(settings)
    page = search_page(
        store,
        query_encoder(settings),
        collection,
        spec,
        filter=flt,
        limit=limit,
        offset=offset,
        threshold=threshold,
        max_pixels=settings.max_image_pixels,
        collapse=collapse,
        mode=mode,
        fusion=hybrid_fusion,
        diversity=diversity,
        cutoff=parse_cutoff(cutoff) if cutoff is not None else None,
    )
    hits = page.hits
    _print(hits, offset, as_json)
    if page.ended_by:
        click.echo(f"pixseek: the list ends at {offset + len(hits)}: {page.ended_by}", err=True)
    if html_path:
        _write_html(Path(html_path), hits, spec.describe(), collection, wheres, offset)


def _print(hits: list[Any], offset: int, as_json: bool) -> None:
    from pixseek.search.render import json_lines, table

    if as_json:
        if hits:
            click.echo(json_lines(hits, offset))
        return
    if not hits:
        click.echo("no results", err=True)
        return
    click.echo(table(hits, offset, None if sys.stdout.isatty() else 200))


def _write_html(
    path: Path, hits: list[Any], query: str, collection: str, wheres: tuple[str, ...], offset: int
) -> None:
    from pixseek.errors import UserError
    from pixseek.search.render import contact_sheet

    details = f"collection {collection}"
    if wheres:
        details += " · where " + " and ".join(wheres)
    if offset:
        details += f" · from result {offset + 1}"
    page = contact_sheet(hits, f"pixseek: {query}", details, offset)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    click.echo(f"wrote {path} ({len(hits)} results)", err=True)
