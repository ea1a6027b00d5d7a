"""Generation options and the runner shared by `pixseek search --generate` and `pixseek jobs`.

Without a broker (`PIXSEEK_BROKER_URL` unset), `search --generate` runs the job in this process
with a progress bar; with one, it queues the job and follows it until it is done.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pixseek.cli.context import settings_from
from pixseek.config import Settings
from pixseek.search.fusion import DEFAULT_FUSION, FUSIONS

if TYPE_CHECKING:
    from pixseek.worker.records import JobResult


def generation_options(full: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The generation options; `full=False` gives the short set that `search` takes."""
    options = [
        click.option(
            "--n-images", type=click.IntRange(0, 16), default=4, show_default=True,
            help="Reference images to generate.",
        ),
        click.option(
            "--fusion", type=click.Choice(FUSIONS), default=DEFAULT_FUSION, show_default=True,
            help="How text and generated images are combined (see search/fusion.py).",
        ),
        click.option(
            "--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
            help="The text's share in the weighted fusion.",
        ),
        click.option(
            "--seed", type=click.IntRange(0, 2**32 - 1 - 16), default=0, show_default=True,
            help="Seed of the first image; image i uses seed + i.",
        ),
    ]  # fmt: skip
    if full:
        options += [
            click.option("--steps", type=click.IntRange(1, 200), help="Denoising steps."),
            click.option("--guidance", type=click.FloatRange(0.0, 50.0), help="Guidance scale."),
            click.option("--size", metavar="N|WxH", help="Image size in pixels."),
            click.option("--negative", default="", help="Negative prompt."),
        ]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def build_spec(prompt: str, collection: str, **given: Any) -> Any:
    from pixseek.worker.spec import JobSpec, parse_size

    width = height = None
    if given.get("size"):
        width, height = parse_size(given["size"])
    return JobSpec(
        prompt=prompt,
        collection=collection,
        n_images=given.get("n_images", 4),
        fusion=given.get("fusion", DEFAULT_FUSION),
        alpha=given.get("alpha", 0.5),
        seed=given.get("seed", 0),
        steps=given.get("steps"),
        guidance=given.get("guidance"),
        width=width,
        height=height,
        negative_prompt=given.get("negative") or "",
        limit=given.get("limit", 10),
        threshold=given.get("threshold"),
        where=tuple(given.get("wheres") or ()),
        ensemble=given.get("ensemble", True),
        diversity=given.get("diversity"),
    ).validated()


def output_result(
    result: JobResult, as_json: bool, html_path: str | None, hit_lines: bool = False
) -> None:
    from pixseek.worker.render import summary, write_page

    if as_json and hit_lines:  # as `pixseek search --json`: one object per hit
        for hit in result.to_dict()["hits"]:
            click.echo(json.dumps(hit, ensure_ascii=False, default=str))
        for image in result.generated:
            click.echo(f"pixseek: generated (seed {image.seed}): {image.path}", err=True)
    elif as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
    else:
        click.echo(summary(result))
    if html_path:
        write_page(Path(html_path), result)


def search_generate(
    ctx: click.Context,
    words: tuple[str, ...],
    collection: str,
    ignored: dict[str, Any],
    as_json: bool,
    html_path: str | None,
    **given: Any,
) -> None:
    """`pixseek search TEXT --generate`: the words are the prompt, the search options apply."""
    from pixseek.errors import UserError
    from pixseek.search.filters import compile_filters

    used = [f"--{name.replace('_', '-')}" for name, value in ignored.items() if value]
    if used:
        raise UserError(f"--generate takes query text only; leave out {', '.join(used)}")
    spec = build_spec(" ".join(words), collection, **given)
    compile_filters(spec.where)
    run_generate(settings_from(ctx), spec, as_json, html_path, hit_lines=True)


def run_generate(
    settings: Settings,
    spec: Any,
    as_json: bool = False,
    html_path: str | None = None,
    hit_lines: bool = False,
) -> JobResult:
    """`search --generate`: in-process without a broker, else queued and followed."""
    from pixseek.worker.render import ProgressDisplay

    display = ProgressDisplay()
    try:
        if settings.broker_url:
            from pixseek.worker.client import JobClient

            client = JobClient(settings)
            job_id = client.submit(spec)
            click.echo(f"pixseek: queued job {job_id}", err=True)
            client.wait(job_id, on_update=lambda s: display(s.state, s.meta))
            result = client.result(job_id)
        else:
            from pixseek.worker.job import run_job

            result = run_job(settings, spec, str(uuid.uuid4()), display)
    finally:
        display.close()
    output_result(result, as_json, html_path, hit_lines)
    return result
