"""`pixseek jobs ...` and `pixseek worker`, plus the runner behind `pixseek search --generate`.

Without a broker (`PIXSEEK_BROKER_URL` unset), `search --generate` runs the job in this process
with a progress bar; with one, it queues the job and follows it until it is done. `pixseek jobs`
always needs the broker.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pixseek.search.fusion import DEFAULT_FUSION, FUSIONS

from pixseek.config import Settings


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
    ).validated()


def _output(
    result: dict[str, Any], as_json: bool, html_path: str | None, hit_lines: bool = False
) -> None:
    from pixseek.worker.render import summary, write_page

    if as_json and hit_lines:  # as `pixseek search --json`: one object per hit
        for hit in result["hits"]:
            click.echo(json.dumps(hit, ensure_ascii=False, default=str))
        for image in result["generated"]:
            click.echo(f"pixseek: generated (seed {image['seed']}): {image['path']}", err=True)
    elif as_json:
        click.echo(json.dumps(result, ensure_ascii=False, default=str))
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
    from pixseek.search.filters import compile_filters

    from pixseek.cli import settings_from
    from pixseek.errors import UserError

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
) -> dict[str, Any]:
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
    _output(result, as_json, html_path, hit_lines)
    return result


def _client(ctx: click.Context) -> Any:
    from pixseek.worker.client import JobClient

    from pixseek.cli import settings_from

    return JobClient(settings_from(ctx))


@click.group("jobs")
def jobs_command() -> None:
    """Queued generative searches on GPU workers: submit, status, result, cancel."""


@jobs_command.command("submit")
@click.argument("prompt", nargs=-1, required=True)
@click.option("--collection", "-c", required=True, help="Collection to search.")
@generation_options(full=True)
@click.option("--limit", "-k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--where", "-w", "wheres", multiple=True, metavar="EXPR", help="Filter (ANDed).")
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), help="Minimum cosine score.")
@click.option("--json", "as_json", is_flag=True, help='Print {"job_id": ...}.')
@click.pass_context
def submit_command(
    ctx: click.Context, prompt: tuple[str, ...], collection: str, as_json: bool, **given: Any
) -> None:
    """Queue a generative search for PROMPT; prints the job id at once."""
    from pixseek.search.filters import compile_filters

    spec = build_spec(" ".join(prompt), collection, **given)
    compile_filters(spec.where)  # a bad filter is refused here, not on the GPU
    job_id = _client(ctx).submit(spec)
    click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)


@jobs_command.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="State and progress as one JSON object.")
@click.pass_context
def status_command(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Where job JOB_ID is: queued, generating i/n, embedding, searching, done, failed."""
    status = _client(ctx).status(job_id)
    click.echo(json.dumps(status.as_dict(), default=str) if as_json else status.describe())


@jobs_command.command("result")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="The whole result as one JSON object.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write an HTML page.")
@click.option("--wait", is_flag=True, help="Wait for the job to finish, showing progress.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up waiting after S seconds.")
@click.pass_context
def result_command(
    ctx: click.Context,
    job_id: str,
    as_json: bool,
    html_path: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """The generated images and ranked hits of finished job JOB_ID."""
    from pixseek.worker.render import ProgressDisplay

    client = _client(ctx)
    if wait:
        display = ProgressDisplay(quiet=as_json)
        try:
            client.wait(job_id, timeout, on_update=lambda s: display(s.state, s.meta))
        finally:
            display.close()
    _output(client.result(job_id), as_json, html_path)


@jobs_command.command("cancel")
@click.argument("job_id")
@click.pass_context
def cancel_command(ctx: click.Context, job_id: str) -> None:
    """Cancel job JOB_ID: at once when queued, within one denoising step when running."""
    status = _client(ctx).cancel(job_id)
    if status.state == "REVOKED":
        click.echo(f"job {status.job_id}: cancelled")
    elif status.finished:
        click.echo(f"job {status.job_id} had already finished: {status.describe()}")
    else:
        click.echo(f"job {status.job_id}: cancel requested ({status.describe()})")


@click.command("worker")
@click.option(
    "--concurrency", type=click.IntRange(1, 64), default=1, show_default=True,
    help="Jobs at once: one per GPU (each process loads its own pipeline).",
)  # fmt: skip
@click.option(
    "--pool", type=click.Choice(["prefork", "solo"]), default="prefork", show_default=True,
    help="prefork: jobs run in a child process (time limits, crash isolation); solo: in this one.",
)  # fmt: skip
@click.option("--loglevel", "-l", default="info", show_default=True)
@click.pass_context
def worker_command(ctx: click.Context, concurrency: int, pool: str, loglevel: str) -> None:
    """Run a Celery worker for generation jobs on the GPU queue (PIXSEEK_JOB_QUEUE)."""
    from pixseek.worker.app import (
        backend_url,
        broker_url,
        check_reachable,
        create_app,
        safe_url,
        visibility_timeout,
    )

    from pixseek.cli import settings_from

    settings = settings_from(ctx)
    app = create_app(settings)
    check_reachable(broker_url(settings), "broker")
    check_reachable(backend_url(settings), "result backend")
    timeout = visibility_timeout(settings)
    click.echo(
        f"pixseek worker: queue {settings.job_queue} on {safe_url(broker_url(settings))}, "
        f"model {settings.t2i_model}, device {settings.device}, data {settings.data_dir}, "
        f"time limit {settings.job_time_limit}s, visibility timeout {timeout}s",
        err=True,
    )
    if timeout <= settings.job_time_limit:
        click.echo(
            "pixseek worker: warning: the visibility timeout is not longer than the job time "
            "limit, so a long job may be handed to a second worker while it runs",
            err=True,
        )
    if not settings.qdrant_url:
        click.echo(
            "pixseek worker: embedded store: this worker keeps the collections it searched open, "
            "and other processes cannot open them meanwhile; use a Qdrant server "
            "(PIXSEEK_QDRANT_URL) to search or ingest while workers run",
            err=True,
        )
    app.worker_main(
        [
            "worker",
            f"--queues={settings.job_queue}",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--hostname=pixseek-{settings.job_queue}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
