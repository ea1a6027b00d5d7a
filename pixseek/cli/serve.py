"""`pixseek serve`: the HTTP API and web page (uvicorn, one process)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pixseek.cli.context import settings_from

if TYPE_CHECKING:
    from pixseek.config import Settings
    from pixseek.serverfile import Claim


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@click.option("--root-path", default="", help="URL prefix when served behind a proxy (/pixseek).")
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, log_level: str, root_path: str) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json) and the web gallery at /.

    One process owns the embedded store: while it runs, `pixseek ingest`, `search` and
    `collections` on the same data dir send their store calls to it, and a second `serve` on
    that data dir is refused. Without PIXSEEK_BROKER_URL, generative jobs run in this
    process's threads; with it, on `pixseek worker` processes.
    """
    from pixseek.serverfile import claim, local_url

    settings = settings_from(ctx)
    # On the embedded store this process owns the data dir: local commands find it through
    # the address file and delegate their store calls; a second server is refused here.
    held = (
        None if settings.qdrant_url else claim(settings.data_dir, local_url(host, port, root_path))
    )
    try:
        _serve(settings, held, host, port, log_level, root_path)
    finally:
        if held is not None:
            held.release()


def _serve(
    settings: Settings, held: Claim | None, host: str, port: int, log_level: str, root_path: str
) -> None:
    import uvicorn

    from pixseek.api.app import create_app

    app = create_app(settings)
    if held is not None:
        app.state.local_secret = held.address.secret
        app.state.claim = held
    store = settings.qdrant_url or f"embedded in {settings.store_dir}"
    jobs = "Celery workers" if settings.broker_url else "in-process threads"
    auth = "API key required" if settings.api_key else "no API key"
    click.echo(
        f"pixseek serve: http://{host}:{port}{root_path}/ (store: {store}; jobs: {jobs}; {auth})",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        root_path=root_path,
        proxy_headers=True,
        timeout_graceful_shutdown=5,
    )
