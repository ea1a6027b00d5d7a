"""bench/results/duplicates.md from the report of bench/duplicates.py."""

from __future__ import annotations

from typing import Any

from bench.duplicates_set import TARGET

CHOSEN = "phash"
CHOSEN_T = "10"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _methods_table(quality: dict[str, Any]) -> list[str]:
    lines = [
        "| method | ms/image | T | recall (target) | precision (target) | precision (all) "
        "| false pairs (all / same class) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, data in quality["methods"].items():
        for t in ("6", "8", "10", "12", "14"):
            row = data["thresholds"][t]
            lines.append(
                f"| {name} | {quality['hash_ms_per_image'][name]} | {t} | "
                f"{_pct(row['target']['recall'])} | {_pct(row['target']['precision'])} | "
                f"{_pct(row['all']['precision'])} | {row['all']['false_pairs']} / "
                f"{row['all']['false_pairs_same_class']} |"
            )
    return lines


def _per_transform(rows: dict[str, dict[str, Any]], columns: list[tuple[str, dict]]) -> list[str]:
    head = "| transformation | " + " | ".join(f"{c} recall | {c} precision" for c, _ in columns)
    lines = [head + " |", "|---|" + "---|---|" * len(columns)]
    for name in sorted(rows):
        cells = []
        for _, data in columns:
            cell = data["per_transform"][name]
            cells.append(f"{_pct(cell['recall'])} | {_pct(cell['precision'])}")
        mark = " (target)" if name in TARGET else ""
        lines.append(f"| {name}{mark} | " + " | ".join(cells) + " |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    machine, quality = report["machine"], report["quality"]
    chosen = quality["methods"][CHOSEN]["thresholds"]
    lines = [
        "# Near duplicates: perceptual hash quality, the `near` tier, timing",
        "",
        f"Set: {report['set']['images']} images = {report['set']['originals']} real originals "
        f"({report['set']['per_class']} per Imagenette class, {report['set']['coco']} COCO) x "
        "19 transformations + the originals; every other image of the same class is a hard "
        "negative. Targets are stated over the target set: re-encodes (JPEG q20/50/90, PNG, WebP, "
        "EXIF-rotated copy), resizes (25/50/200%) and crops up to 5%.",
        f"Machine: {machine['cpu']} ({machine['cpus']} CPUs), load average "
        f"{machine['load_avg_start']} at the start, {machine.get('load_avg_end')} at the end "
        "(shared machine: timings are noisy, the quality numbers are exact).",
        "",
        "## The hash (all pairs of the set)",
        "",
        f"Our numpy pHash/dHash give the same bits as imagehash on every image: "
        f"{quality['identical_to_imagehash']}. Closest distinct originals (pHash): "
        f"{quality['methods']['phash']['distinct_pictures']}; dHash: "
        f"{quality['methods']['dhash']['distinct_pictures']}.",
        "",
        *_methods_table(quality),
        "",
        f"Chosen: **pHash, near threshold {CHOSEN_T} bits** (`NEAR_MAX_DISTANCE`): the largest "
        "threshold at which no pair of distinct pictures is joined in the whole set, with "
        "recall over the target set "
        f"{_pct(chosen[CHOSEN_T]['target']['recall'])}, precision "
        f"{_pct(chosen[CHOSEN_T]['target']['precision'])} (all transformations: "
        f"{_pct(chosen[CHOSEN_T]['all']['precision'])}).",
        "",
        "### Per transformation (pHash)",
        "",
        *_per_transform(
            chosen["10"]["per_transform"],
            [(f"T={t}", chosen[t]) for t in ("8", "10", "12")],
        ),
        "",
    ]
    e2e = report.get("end_to_end")
    if e2e:
        columns = [(k, v) for k, v in e2e.items() if isinstance(v, dict)]
        lines += [
            "## The `near` tier end to end",
            "",
            f"`pixseek ingest` of the set ({e2e['ingested']} images, {e2e['ingest_seconds']} s, "
            "tiny random CLIP: its cosine is real but untrained), then `find_duplicates`; a "
            "pair counts as found when both are in one group.",
            "",
            "| run | groups | seconds | recall (target) | precision (target) | precision (all) |",
            "|---|---|---|---|---|---|",
        ]
        for label, data in columns:
            lines.append(
                f"| {label} | {data['groups']} | {data['seconds']} | "
                f"{_pct(data['target']['recall'])} | {_pct(data['target']['precision'])} | "
                f"{_pct(data['all']['precision'])} |"
            )
        lines += ["", "### Per transformation (end to end)", ""]
        lines += _per_transform(next(iter(columns))[1]["per_transform"], columns[:2])
        lines.append("")
    lines += [
        "## Time (Qdrant Edge, synthetic points)",
        "",
        "| points | load s | tier | seconds | queries | ms/query | groups |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["timing"]:
        for label, data in row.items():
            if isinstance(data, dict):
                lines.append(
                    f"| {row['points']} | {row['load_seconds']} | {label} | {data['seconds']} | "
                    f"{data['queries']} | {data['ms_per_query'] or '-'} | {data['groups']} |"
                )
    lines.append("")
    idx = report.get("indexed")
    if idx:
        lines += [
            "## Exact scans vs the HNSW index on the `phash` vector",
            "",
            f"{idx['points']} synthetic points, index built in {idx['optimize_seconds']} s "
            f"({idx['index']}); {idx['sample']} near queries (10 bits) on a sample, load average "
            f"{idx['load_avg']}: exact {idx['exact_ms_per_query']} ms/query, HNSW "
            f"{idx['hnsw_ms_per_query']} ms/query, HNSW finds "
            f"{idx['hnsw_recall_of_near_pairs']} of the {idx['near_pairs_in_sample']} near pairs "
            "the exact scan finds. `find_duplicates` uses exact scans.",
            "",
        ]
    return "\n".join(lines)
