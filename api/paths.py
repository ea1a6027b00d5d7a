"""No absolute server path in a response unless PIXSEEK_API_SHOW_PATHS is on.

Hits keep `source` (relative to its root) and get the root's *name* (the folder's or archive's
base name) instead of its absolute path; images are reached through the image routes. Error
lines keep their meaning with the data dir shown as `$PIXSEEK_DATA_DIR` and any other absolute
path cut to its last component.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from pixseek.config import Settings

# An absolute POSIX path not inside a URL (`http://host/x`) or a relative path (`a/b`).
_ABSOLUTE = re.compile(r"(?<![\w./~$\-])/(?:[^\s'\"/,;()<>]+/)*([^\s'\"/,;()<>]+)/?")
_WINDOWS = re.compile(r"\b[A-Za-z]:\\(?:[^\s'\"\\,;()<>]+\\)*([^\s'\"\\,;()<>]+)")


# The API's own routes read like absolute paths ("GET /collections lists them"): kept.
_ROUTES = ("/collections", "/search", "/images", "/jobs", "/ingest", "/health", "/openapi")


def _cut(match: re.Match[str]) -> str:
    path = match.group(0)
    if path.startswith(_ROUTES):
        return path
    return f".../{match.group(1)}"


def root_name(root: str) -> str:
    """`/srv/photos/2021/` -> `2021`, `/data/set.tar` -> `set.tar`."""
    return PurePath(root.rstrip("/\\") or "/").name or "/"


def public_payload(payload: dict[str, Any], show_paths: bool) -> dict[str, Any]:
    if show_paths or not isinstance(payload.get("root"), str):
        return payload
    return {**payload, "root": root_name(payload["root"])}


def redact(text: str, settings: Settings) -> str:
    """The line with the data dir named by its variable and other absolute paths cut short."""
    if settings.api_show_paths or not text:
        return text
    data_dir = str(settings.data_dir)
    for spelling in {data_dir, str(settings.data_dir.resolve())}:
        if len(spelling) > 1:
            text = text.replace(spelling, "$PIXSEEK_DATA_DIR")
    text = _ABSOLUTE.sub(_cut, text)
    return _WINDOWS.sub(lambda m: f"...\\{m.group(1)}", text)


def public_generated(record: dict[str, Any], show_paths: bool) -> dict[str, Any]:
    """A job's generated-image record without its file path (the image has a URL)."""
    if show_paths:
        return record
    return {key: value for key, value in record.items() if key != "path"}
