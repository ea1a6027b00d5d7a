"""`pixseek models [...]`: model utilities (random-weight writers for offline machines)."""

from __future__ import annotations

import click

from pixseek.errors import UserError


@click.group("models")
def models_command() -> None:
    """Model utilities."""


@models_command.command("random")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--arch", default="ViT-B-32", show_default=True, help='open_clip name or "tiny".')
def random_model_command(directory: str, arch: str) -> None:
    """Write an open_clip model with RANDOM weights to DIRECTORY (local-dir layout).

    For smoke tests and benchmarks on machines that cannot download weights: use it with
    PIXSEEK_CLIP_MODEL=local-dir:DIRECTORY. Search results from it are meaningless.
    """
    from pathlib import Path

    from pixseek.models.random_weights import write_random_clip

    try:
        path = write_random_clip(Path(directory), arch)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"local-dir:{path.resolve()}")
