"""`pixseek serve`: the HTTP API and web page (uvicorn, one process)."""

from __future__ import annotations

import click

from pixseek.cli.context import settings_from


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

    One process: the embedded store can be open in one process only, so run ingest and search
    through this server while it runs (or use a Qdrant server). Without PIXSEEK_BROKER_URL,
    generative jobs run in this process's threads; with it, on `pixseek worker` processes.
    """
    import uvicorn

    from pixseek.api.app import create_app

    settings = settings_from(ctx)
    app = create_app(settings)
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
