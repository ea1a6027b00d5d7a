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


@models_command.command("random-t2i")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--arch",
    default="tiny",
    show_default=True,
    help='"tiny" (64 px in well under a second on a CPU), "sd-turbo" or "sd15" (the real '
    "architectures, for timing).",
)
@click.option("--seed", default=0, show_default=True, type=int)
def random_t2i_command(directory: str, arch: str, seed: int) -> None:
    """Write a diffusers text-to-image pipeline with RANDOM weights to DIRECTORY.

    For dry runs of generative search and `pixseek eval` offline: use it with
    PIXSEEK_T2I_MODEL=DIRECTORY. Its images are noise, so the results are meaningless.
    """
    from pathlib import Path

    from pixseek.models.random_weights import T2I_ARCHITECTURES, write_random_t2i

    if arch not in T2I_ARCHITECTURES:
        raise UserError(
            f"unknown text-to-image architecture {arch!r}; use one of {', '.join(T2I_ARCHITECTURES)}"
        )
    path = write_random_t2i(Path(directory), arch, seed)
    click.echo(str(path.resolve()))
