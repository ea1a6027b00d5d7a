"""`pixseek worker`: a Celery worker for the GPU queue."""

from __future__ import annotations

import os

import click

from pixseek.cli.context import settings_from


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
    """Run a Celery worker for generation jobs and `ingest --distributed` shards on the GPU queue
    (PIXSEEK_JOB_QUEUE)."""
    from pixseek.worker.app import (
        backend_url,
        broker_url,
        check_reachable,
        create_app,
        safe_url,
        visibility_timeout,
    )

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
