"""What rounding and the tie convention did to evaluation numbers, measured on a real eval run.

Reads a `pixseek eval --out DIR` folder (per_query.jsonl holds every ranking with raw scores) and
compares, per (query, strategy):
- raw: the metrics as pixseek computes them now (raw float scores, expectation over tie orders);
- rounded: the former pipeline (scores rounded to 6 decimals for display, then step-wise AP as
  scikit-learn computes it: precision once per tie group), with the same denominators.

    python -m bench.eval_ties --run eval-imagenette [--name eval_ties]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pixseek.evaluation.metrics import TieGroup, average_precision, tie_groups

from bench._common import load, write_results


def stepwise_ap(groups: list[TieGroup], n_relevant: int) -> float:
    """The former convention (scikit-learn's): precision at each tie group's end."""
    ap = seen = hits_seen = 0.0
    for g in groups:
        seen += g.size
        hits_seen += g.hits
        if g.hits:
            ap += g.hits * (hits_seen / seen)
    return ap / n_relevant


def has_ties(ranking: list[tuple[str, float]]) -> bool:
    scores = [s for _, s in ranking]
    return len(set(scores)) < len(scores)


def measure(run: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in (run / "per_query.jsonl").read_text().splitlines()]
    per_strategy: dict[str, dict[str, Any]] = {}
    for row in rows:
        relevant, n = set(row["relevant_present"]), row["n_relevant"]
        for strategy, record in row["strategies"].items():
            raw = [(i, float(s)) for i, s in record["ranking"]]
            rounded = [(i, round(s, 6)) for i, s in raw]
            ap_raw = average_precision(tie_groups(raw, relevant), n)
            ap_old = stepwise_ap(tie_groups(rounded, relevant), n)
            stats = per_strategy.setdefault(
                strategy,
                {"queries": 0, "tied_raw": 0, "tied_rounded": 0, "ap_diffs": []},
            )
            stats["queries"] += 1
            stats["tied_raw"] += has_ties(raw)
            stats["tied_rounded"] += has_ties(rounded)
            stats["ap_diffs"].append(ap_old - ap_raw)
    for stats in per_strategy.values():
        diffs = stats.pop("ap_diffs")
        stats["max_abs_ap_change"] = max(abs(d) for d in diffs)
        stats["mean_ap_change"] = sum(diffs) / len(diffs)
        stats["queries_ap_changed"] = sum(1 for d in diffs if abs(d) > 1e-12)
    return {"run": str(run), "load_average": load(), "strategies": per_strategy}


def markdown(report: dict[str, Any], source: str) -> str:
    lines = [
        "# Rounded scores + step-wise AP (former) vs raw scores + expected AP (now)",
        "",
        f"Eval run: {source}. Load average {report['load_average']} (irrelevant: no timings).",
        "",
        "| strategy | queries | rankings with ties: raw | after 6-decimal rounding | "
        "queries whose AP changes | max abs AP change | mean AP change (former - now) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in report["strategies"].items():
        lines.append(
            f"| {name} | {s['queries']} | {s['tied_raw']} | {s['tied_rounded']} | "
            f"{s['queries_ap_changed']} | {s['max_abs_ap_change']:.6f} | "
            f"{s['mean_ap_change']:+.2e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a pixseek eval --out folder")
    parser.add_argument("--name", default="eval_ties")
    parser.add_argument("--source", default=None, help="how to describe the run in the table")
    args = parser.parse_args()
    report = measure(args.run)
    write_results(args.name, report, markdown(report, args.source or str(args.run)))
    print(markdown(report, args.source or str(args.run)))


if __name__ == "__main__":
    main()
