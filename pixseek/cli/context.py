"""What every command shares: the settings, loaded once per invocation."""

from __future__ import annotations

import click

from pixseek.config import Settings, load_settings


def settings_from(ctx: click.Context) -> Settings:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
    return root.obj
