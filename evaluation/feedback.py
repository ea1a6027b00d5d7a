"""A simulated relevance-feedback round: what one round of marks does to each strategy.

For each query and strategy, the relevant hits among the top `k` are marked good and the others
bad (an ideal user who judges the first page), the query is run again with those marks
(`search.engine` relevance feedback), and the metrics are computed before and after:

  full      the whole re-ranked list: what the user sees after the round (marked good hits
            stay in it, at the top, as in pixseek's feedback).
  residual  the judged top-k removed from both lists and from the relevant set (the classic
            residual-collection evaluation): only what the round newly finds counts.

Generative strategies continue as a text search with the marks (a feedback round re-ranks from
the query and the marks; generated images are not made again). Keyword mode is left out: marks
steer the picture (CLIP) ranking, which a BM25 ranking does not have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pixseek.evaluation.metrics import paired_bootstrap, query_metrics

Ranking = list[tuple[str, float]]
Rerun = Callable[[list[str], list[str]], Ranking]
FEEDBACK_METRICS = ("AP", "nDCG@{k}", "R@{k}")


@dataclass
class RoundResult:
    marked_good: int
    marked_bad: int
    before: dict[str, float]
    after: dict[str, float]
    residual_before: dict[str, float]
    residual_after: dict[str, float]


def feedback_round(
    ranking: Ranking,
    relevant: set[str],
    ks: Sequence[int],
    n_relevant: int,
    k: int,
    rerun: Rerun,
) -> RoundResult:
    judged = [point_id for point_id, _ in ranking[:k]]
    good = [i for i in judged if i in relevant]
    bad = [i for i in judged if i not in relevant]
    after = rerun(good, bad)
    before_metrics = query_metrics(ranking, relevant, ks, n_relevant)
    after_metrics = query_metrics(after, relevant, ks, n_relevant)
    seen = set(judged)
    left = relevant - seen
    n_left = n_relevant - len(good)
    residual_before = _residual(ranking, seen, left, ks, n_left)
    residual_after = _residual(after, seen, left, ks, n_left)
    return RoundResult(
        len(good), len(bad), before_metrics, after_metrics, residual_before, residual_after
    )


def _residual(
    ranking: Ranking, seen: set[str], left: set[str], ks: Sequence[int], n_left: int
) -> dict[str, float]:
    if n_left <= 0:
        return {}
    return query_metrics([r for r in ranking if r[0] not in seen], left, ks, n_left)


def summarize(rounds: dict[str, list[RoundResult]], ks: Sequence[int]) -> dict[str, object]:
    """Per strategy and metric: mean before, after, and the paired difference with its 95%
    interval, over the queries (residual: those with relevant items left after the round)."""
    names = [m.format(k=k) for m in FEEDBACK_METRICS for k in ks if "{k}" in m]
    names = ["AP", *names]
    out: dict[str, object] = {}
    for strategy, results in rounds.items():
        per_metric: dict[str, object] = {}
        for view in ("full", "residual"):
            pairs = [
                (r.before, r.after) if view == "full" else (r.residual_before, r.residual_after)
                for r in results
            ]
            pairs = [(b, a) for b, a in pairs if b and a]
            for name in names:
                before = [b[name] for b, _ in pairs]
                after = [a[name] for _, a in pairs]
                per_metric[f"{view} {name}"] = {
                    "queries": len(pairs),
                    "before": sum(before) / len(before) if before else float("nan"),
                    "after": sum(after) / len(after) if after else float("nan"),
                    "delta": paired_bootstrap(after, before).as_dict(),
                }
        out[strategy] = {
            "marked_good": sum(r.marked_good for r in results),
            "marked_bad": sum(r.marked_bad for r in results),
            "metrics": per_metric,
        }
    return out


def markdown(summary: dict[str, object], k: int) -> list[str]:
    """The report's feedback table: before -> after (paired difference, 95% interval)."""
    if not summary:
        return []
    lines = [
        "",
        f"Simulated feedback round (relevant hits of the top {k} marked good, the others bad, "
        "query re-run; `residual` leaves the judged hits out of both lists):",
        "",
        "| strategy | metric | before | after | difference [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for strategy, data in summary.items():
        assert isinstance(data, dict)
        for name, cell in data["metrics"].items():
            delta = cell["delta"]
            lines.append(
                f"| {strategy} | {name} | {cell['before']:.3f} | {cell['after']:.3f} | "
                f"{delta['mean']:+.3f} [{delta['ci_low']:+.3f}, {delta['ci_high']:+.3f}] |"
            )
    return lines
