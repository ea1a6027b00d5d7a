"""What every command shares: the settings, loaded once per invocation, and common options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pixseek.config import Settings, load_settings


def settings_from(ctx: click.Context) -> Settings:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
    return root.obj


WHERE_HELP = (
    "Filter, e.g. 'label=dog', 'label in (dog, cat)', 'width>=640', 'taken>=2020-01-01', "
    "'source~beach', or raw Qdrant filter JSON; repeated filters are ANDed."
)


def where_option(help: str = WHERE_HELP) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--where/-w EXPR` (repeatable, passed as `wheres`): the filter language of search."""
    return click.option("--where", "-w", "wheres", multiple=True, metavar="EXPR", help=help)
