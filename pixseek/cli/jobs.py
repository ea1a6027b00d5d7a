"""`pixseek jobs ...`: submit, follow and cancel queued generative searches (needs the broker)."""

from __future__ import annotations

import json
from typing import Any

import click

from pixseek.cli.context import settings_from, where_option
from pixseek.cli.generate import build_spec, generation_options, output_result
from pixseek.worker.records import JobState


def _client(ctx: click.Context) -> Any:
    from pixseek.worker.client import JobClient

    return JobClient(settings_from(ctx))


@click.group("jobs")
def jobs_command() -> None:
    """Queued generative searches on GPU workers: submit, status, result, cancel."""


@jobs_command.command("submit")
@click.argument("prompt", nargs=-1, required=True)
@click.option("--collection", "-c", required=True, help="Collection to search.")
@generation_options(full=True)
@click.option("--limit", "-k", type=click.IntRange(1, 1000), default=10, show_default=True)
@where_option()
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
    output_result(client.result(job_id), as_json, html_path)


@jobs_command.command("cancel")
@click.argument("job_id")
@click.pass_context
def cancel_command(ctx: click.Context, job_id: str) -> None:
    """Cancel job JOB_ID: at once when queued, within one denoising step when running."""
    status = _client(ctx).cancel(job_id)
    if status.state == JobState.REVOKED:
        click.echo(f"job {status.job_id}: cancelled")
    elif status.finished:
        click.echo(f"job {status.job_id} had already finished: {status.describe()}")
    else:
        click.echo(f"job {status.job_id}: cancel requested ({status.describe()})")
