"""Duplicate groups as text, JSON lines, or a self-contained HTML review page.

The review page shows each group as a row of thumbnails side by side, the suggested keeper
first and marked, with size, date, path and hash distance under every picture.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime

from pixseek.search.duplicates import DuplicateReport, Group
from pixseek.search.render import thumbnail_data_uri


def json_lines(report: DuplicateReport) -> str:
    return "\n".join(
        json.dumps(g.as_dict(), ensure_ascii=False, default=str) for g in report.groups
    )


def summary_line(report: DuplicateReport) -> str:
    s = report.summary()
    line = (
        f"{s['groups']} {s['tier']} group(s), {s['duplicates']} duplicate(s) among "
        f"{s['points']} points ({s['queries']} queries, {s['seconds']:.1f}s)"
    )
    if s["unhashed"]:
        line += (
            f"; {s['unhashed']} points have no hash: run "
            f"`pixseek duplicates -c {report.collection} --update-hashes`"
        )
    return line


def _size(point: dict) -> str:
    if point.get("width") and point.get("height"):
        return f"{point['width']}x{point['height']}"
    return "?"


def text(report: DuplicateReport) -> str:
    lines = []
    for number, group in enumerate(report.groups, 1):
        lines.append(f"group {number} ({len(group.points)} points, keep: {group.reason})")
        for point in group.points:
            mark = "keep" if point["id"] == group.keep else "    "
            distance = "" if point.get("distance") is None else f" d={point['distance']}"
            lines.append(f"  {mark} {_size(point):>11}{distance:>6}  {point.get('source')}")
    return "\n".join(lines)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
h1{font-size:1.2rem;margin:0 0 .3rem} p.meta{color:#666;margin:0 0 1rem;font-size:.85rem}
section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:0 0 14px;padding:8px}
section h2{font-size:.9rem;margin:0 0 6px} .row{display:flex;gap:10px;overflow-x:auto}
figure{margin:0;width:200px;flex:none;border:2px solid transparent;border-radius:4px}
figure.keep{border-color:#2a7} figure .img{height:180px;display:flex;align-items:center;
justify-content:center;background:#eee} figure img{max-width:100%;max-height:180px}
figcaption{font-size:.75rem;line-height:1.35;padding:4px;word-break:break-all}
.badge{background:#2a7;color:#fff;border-radius:3px;padding:0 4px} .missing{color:#999}
"""


def _figure(point: dict, group: Group) -> str:
    uri = thumbnail_data_uri(point)
    source = str(point.get("source", point["id"]))
    picture = (
        f'<img src="{uri}" alt="{html.escape(source)}">'
        if uri
        else '<span class="missing">image unavailable</span>'
    )
    keep = point["id"] == group.keep
    badge = '<span class="badge">keep</span> ' if keep else ""
    details = [_size(point), f"{point.get('bytes') or '?'} bytes"]
    if point.get("distance") is not None:
        details.append(f"hash distance {point['distance']}")
    if point.get("taken"):
        details.append(f"taken {point['taken']}")
    return (
        f'<figure class="{"keep" if keep else ""}"><div class="img">{picture}</div>'
        f"<figcaption>{badge}{html.escape(' · '.join(details))}<br>{html.escape(source)}<br>"
        f"<small>{html.escape(point['id'])}</small></figcaption></figure>"
    )


def review_page(report: DuplicateReport) -> str:
    """A complete HTML page; every value from the payload is escaped."""
    sections = []
    for number, group in enumerate(report.groups, 1):
        figures = "".join(_figure(point, group) for point in group.points)
        sections.append(
            f"<section><h2>Group {number} · {len(group.points)} pictures · keep: "
            f'{html.escape(group.reason)}</h2><div class="row">{figures}</div></section>'
        )
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"{report.tier} duplicates in {report.collection}"
    body = "\n".join(sections) if sections else "<p>No duplicates found.</p>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="meta">{html.escape(summary_line(report))} · {created}</p>'
        f"{body}</body></html>\n"
    )
