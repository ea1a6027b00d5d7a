"""Search results as a text table, JSON lines, or a self-contained HTML contact sheet.

The contact sheet embeds every thumbnail as a base64 data URI, so the one .html file can be
mailed or archived; image bytes are read from the payload's root/source (a folder, or a member
of the tar/zip archive that was ingested).
"""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pixseek.media import THUMBNAIL_PX, read_image_bytes, thumbnail_jpeg
from pixseek.store.base import Hit


def hit_record(rank: int, hit: Hit) -> dict[str, Any]:
    return {
        "rank": rank,
        "id": hit.id,
        # Full precision: a score copied from here into --threshold keeps that very hit, and
        # evaluation never sees ties that rounding invented.
        "score": float(hit.score),
        "source": hit.payload.get("source"),
        "payload": hit.payload,
        **({"group_size": hit.group_size} if hit.group_size is not None else {}),
    }


def json_lines(hits: Sequence[Hit], offset: int = 0) -> str:
    return "\n".join(
        json.dumps(hit_record(offset + i + 1, hit), ensure_ascii=False, default=str)
        for i, hit in enumerate(hits)
    )


def _group_note(hit: Hit) -> str:
    """' (+3 near duplicates)' on a collapsed result that stands for others."""
    extra = (hit.group_size or 1) - 1
    return f" (+{extra} near duplicate{'s' if extra > 1 else ''})" if extra else ""


def _labels(payload: dict[str, Any]) -> str:
    labels = payload.get("labels") or []
    return ", ".join(str(label) for label in labels) if isinstance(labels, list) else str(labels)


def table(hits: Sequence[Hit], offset: int = 0, width: int | None = None) -> str:
    """rank, score, source, labels; long sources are shortened from the left to fit the width."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    rows = [
        (
            str(offset + i + 1),
            f"{hit.score:.4f}",
            str(hit.payload.get("source", hit.id)) + _group_note(hit),
            _labels(hit.payload),
        )
        for i, hit in enumerate(hits)
    ]
    rank_w = max([4, *(len(r[0]) for r in rows)])
    source_w = max([6, *(len(r[2]) for r in rows)])
    source_w = min(source_w, max(20, width - rank_w - 8 - 24))
    lines = [f"{'rank':>{rank_w}}  {'score':>6}  {'source':<{source_w}}  labels"]
    for rank, score, source, labels in rows:
        if len(source) > source_w:
            source = "…" + source[-(source_w - 1) :]
        lines.append(f"{rank:>{rank_w}}  {score:>6}  {source:<{source_w}}  {labels}".rstrip())
    return "\n".join(lines)


def thumbnail_data_uri(payload: dict[str, Any], size: int = THUMBNAIL_PX) -> str | None:
    data = read_image_bytes(payload)
    thumbnail = None if data is None else thumbnail_jpeg(data, size)
    if thumbnail is None:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(thumbnail).decode("ascii")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
h1{font-size:1.2rem;margin:0 0 .3rem} p.meta{color:#666;margin:0 0 1rem;font-size:.85rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;overflow:hidden}
figure .img{height:200px;display:flex;align-items:center;justify-content:center;background:#eee}
figure img{max-width:100%;max-height:200px} .missing{color:#999;font-size:.8rem}
figcaption{padding:6px 8px;font-size:.78rem;line-height:1.35;word-break:break-all}
.score{font-weight:600} .labels{color:#555}
"""


def contact_sheet(
    hits: Sequence[Hit],
    title: str,
    details: str = "",
    offset: int = 0,
    thumbnail_px: int = THUMBNAIL_PX,
) -> str:
    """A complete HTML page; every value from the payload is escaped."""
    cards = []
    for i, hit in enumerate(hits):
        uri = thumbnail_data_uri(hit.payload, thumbnail_px)
        source = str(hit.payload.get("source", hit.id))
        picture = (
            f'<img src="{uri}" alt="{html.escape(source)}">'
            if uri
            else '<span class="missing">image unavailable</span>'
        )
        score = f"{hit.score:.4f}" if math.isfinite(hit.score) else str(hit.score)
        cards.append(
            "<figure>"
            f'<div class="img">{picture}</div>'
            f'<figcaption><span class="score">#{offset + i + 1} · {score}</span><br>'
            f"{html.escape(source)}<br>"
            f'<span class="labels">{html.escape(_labels(hit.payload))}</span><br>'
            f'<small title="point id">{html.escape(hit.id)}</small></figcaption>'
            "</figure>"
        )
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(cards) if cards else "<p>No results.</p>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="meta">{html.escape(details)} · {len(hits)} results · {created}</p>'
        f'<div class="grid">\n{body}\n</div></body></html>\n'
    )
