"""`pixseek models [...]`: model utilities (random-weight writers for offline machines, the
measured inference choice)."""

from __future__ import annotations

import click

from pixseek.errors import UserError


@click.group("models")
def models_command() -> None:
    """Model utilities."""


@models_command.command("info")
@click.option("--json", "as_json", is_flag=True, help="the stored decisions as JSON")
@click.pass_context
def info_command(ctx: click.Context, as_json: bool) -> None:
    """Show the inference settings `auto` chose by measurement on this machine, with the numbers.

    One decision per model weights x machine (CPU model and flags, cores, threads, library
    versions), stored under CACHE_DIR/accel/; delete a file there to measure again.
    """
    import json

    from pixseek.cli.context import settings_from
    from pixseek.models.accel_select import cached_decisions

    settings = settings_from(ctx)
    decisions = cached_decisions(settings.cache_dir)
    if as_json:
        click.echo(json.dumps([d.to_json() for d in decisions], indent=2))
        return
    click.echo(f"backend {settings.backend}, precision {settings.precision}")
    if not decisions:
        click.echo(
            f"no measured decision under {settings.cache_dir / 'accel'} (auto x auto on CPU "
            "measures on the first images it embeds)"
        )
    for d in decisions:
        key = d.key
        flags = ",".join(key.cpu_flags) or "none"
        click.echo(
            f"\nweights {key.weights} on {key.cpu_model} (flags {flags}; {key.cores} cores, "
            f"{key.threads} threads; torch {key.torch}, onnxruntime {key.onnxruntime or '-'})"
        )
        click.echo(
            f"chosen: {d.chosen.label} (measured {d.measured_at} on {d.images} images, "
            f"{d.seconds:.1f}s; {d.key.digest}.json)"
        )
        for c in d.candidates:
            speed = "-" if c.images_per_s is None else f"{c.images_per_s:.1f} img/s"
            cos = "-" if c.min_cosine is None else f"{c.min_cosine:.5f}"
            top = "-" if c.top10_overlap is None else f"{c.top10_overlap:.3f}"
            verdict = "chosen" if c.setting == d.chosen.label else c.rejected
            click.echo(f"  {c.setting:28} {speed:>14}  min cos {cos}  top-10 {top}  {verdict}")


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


@models_command.command("random-family")
@click.argument("parent", type=click.Path(file_okay=False))
@click.option(
    "--family",
    type=click.Choice(["siglip", "siglip2", "xlm-roberta", "nllb", "mobileclip"]),
    required=True,
)
@click.option(
    "--corpus",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="text to train the tokenizer on: one sentence a line, or JSONL with `captions`",
)
def random_family_command(parent: str, family: str, corpus: str) -> None:
    """Write a TINY random model of an OpenCLIP family under PARENT, with a tokenizer trained on
    CORPUS in the real repositories' file layout (see README "Model families").

    Use it with PIXSEEK_CLIP_MODEL=local-dir:DIR (the printed value). Results are meaningless.
    """
    import json
    from pathlib import Path

    from pixseek.models.random_families import write_random_family

    lines: list[str] = []
    for line in Path(corpus).read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("{"):
            try:
                lines.extend(str(c) for c in json.loads(line).get("captions") or [])
            except (ValueError, AttributeError):
                raise UserError(
                    f"{corpus}: a line starting with '{{' is not a JSON object"
                ) from None
        elif line.strip():
            lines.append(line.strip())
    if len(lines) < 50:
        raise UserError(
            f"{corpus} has {len(lines)} sentences; give at least 50 to train a tokenizer"
        )
    path = write_random_family(Path(parent), family, lines)
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
