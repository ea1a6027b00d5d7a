"""bench/search.py's report: targets and the markdown page (bench/results/search.md)."""

from __future__ import annotations

from typing import Any


def targets(report: dict[str, Any]) -> dict[str, Any]:
    sizes = report["sizes"]
    if not sizes:
        return {}
    big = sizes[max(sizes, key=int)]
    ratio = big["edge"]["filtered_over_unfiltered_p50"]
    speedup = big["edge_speedup_over_local"]["filtered_p50"]
    return {
        "at_size": int(max(sizes, key=int)),
        "edge_filtered_over_unfiltered_p50": ratio,
        "edge_filtered_over_unfiltered_target": 1.5,
        "edge_filtered_met": ratio <= 1.5,
        "edge_speedup_over_local_filtered_p50": speedup,
        "edge_speedup_target": 100,
        "edge_speedup_met": speedup >= 100,
    }


def slow_filters(report: dict[str, Any]) -> list[str]:
    sizes = report["sizes"]
    big = sizes[max(sizes, key=int)]
    notes = []
    for key in ("edge", "edge_optimized"):
        if key not in big:
            continue
        base = big[key]["unfiltered"]["p50_ms"]
        for label, stats in big[key]["filters"].items():
            if stats["p50_ms"] > 1.5 * base:
                notes.append(f"{key} `{label}` {stats['p50_ms'] / base:.1f}x")
    return notes


def _ms(stats: dict[str, float]) -> str:
    return f"{stats['p50_ms']:.2f} / {stats['p95_ms']:.2f}"


def markdown(report: dict[str, Any]) -> str:
    enc = report["text_encoding"]
    lines = [
        "# Search latency",
        "",
        f"{report['created']} · {report['machine']['cpu_count']} CPUs · {report['model']} · "
        f"`{report.get('command', 'python -m bench.search')}` ({report.get('total_seconds', '?')} s). "
        "Cells are p50 / p95 in ms.",
        "",
        f"Load average (1/5/15 min) at start {report['machine']['load_average_at_start']}, "
        f"at end {report['machine'].get('load_average_at_end')}: the machine is shared, so "
        "absolute times carry noise; ratios measured side by side are more robust.",
        "",
        "## Text encoding",
        "",
        "| case | p50 / p95 ms | n |",
        "|---|---|---|",
        f"| ensembled, {len(enc['templates'])} templates, uncached | "
        f"{_ms(enc['ensembled_uncached'])} | {enc['ensembled_uncached']['n']} |",
        f"| plain (no templates), uncached | {_ms(enc['plain_uncached'])} | "
        f"{enc['plain_uncached']['n']} |",
        f"| cache hit | {_ms(enc['cached'])} | {enc['cached']['n']} |",
        "",
        "## Vector search (top 10)",
        "",
        "| points | store | upsert pts/s | unfiltered | filtered (all filters) | "
        "filtered / unfiltered p50 | n per case |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, entry in report["sizes"].items():
        for key in ("edge", "edge_optimized", "local"):
            if key not in entry:
                continue
            row = entry[key]
            name = {
                "edge": "Qdrant Edge (as ingested)",
                "edge_optimized": f"Qdrant Edge after optimize ({row.get('optimize_s')} s)",
                "local": "qdrant-client local (in memory)",
            }[key]
            lines.append(
                f"| {int(size):,} | {name} | {row.get('upsert_points_per_s', '')} | "
                f"{_ms(row['unfiltered'])} | {_ms(row['filtered'])} | "
                f"{row['filtered_over_unfiltered_p50']} | {row['unfiltered']['n']} |"
            )
    lines += ["", "## Per filter", "", "| points | store | filter | selectivity | p50 / p95 ms |"]
    lines.append("|---|---|---|---|---|")
    for size, entry in report["sizes"].items():
        for key in ("edge", "edge_optimized", "local"):
            for label, stats in entry.get(key, {}).get("filters", {}).items():
                lines.append(
                    f"| {int(size):,} | {key} | `{label}` | {stats['selectivity']:.1%} | "
                    f"{_ms(stats)} |"
                )
    lines += [
        "",
        "## Text queries end to end (encode uncached + run_search)",
        "",
        "| points | store | encode | search | total | total, text cached | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, entry in report["sizes"].items():
        for key in ("edge", "local"):
            tq = entry[key]["text_query"]
            lines.append(
                f"| {int(size):,} | {key} | {_ms(tq['encode'])} | {_ms(tq['search'])} | "
                f"{_ms(tq['total'])} | {_ms(tq['total_cached_text'])} | {tq['total']['n']} |"
            )
    t = report.get("targets", {})
    if t:
        lines += [
            "",
            f"## Targets at {t['at_size']:,} points",
            "",
            f"- Embedded store, filtered p50 / unfiltered p50 = "
            f"{t['edge_filtered_over_unfiltered_p50']} (target <= 1.5): "
            f"{'met' if t['edge_filtered_met'] else 'NOT met'}",
            f"- Embedded store vs local mode, filtered p50 speed-up = "
            f"{t['edge_speedup_over_local_filtered_p50']}x (target >= 100x): "
            f"{'met' if t['edge_speedup_met'] else 'NOT met'}",
        ]
        slow = slow_filters(report)
        if slow:
            lines.append(
                "- The target is on the pooled p50 of all filters; single filters above 1.5x "
                "the unfiltered p50 on the embedded store: " + "; ".join(slow)
            )
    if "local_on_disk_upsert_points_per_s" in report:
        lines += [
            "",
            f"Local mode on disk (`local:/path`) upserts "
            f"{report['local_on_disk_upsert_points_per_s']} points/s (one sqlite transaction per "
            f"point), so local mode is loaded and searched in memory here; its search and filter "
            "code is the same.",
        ]
    return "\n".join(lines) + "\n"
