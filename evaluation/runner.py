"""Run every strategy on the same queries through the same code path users get.

Each (query, strategy) pair is one generative-search job run in-process (`worker.job.run_job`):
`text` is the plain CLIP text search with prompt ensembling, the others fuse it with generated
images. Generated images are cached by (model, prompt, seed, steps, size, guidance, negative
prompt), so all strategies of a query share the same pictures and a re-run generates nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pixseek.evaluation.metrics import bootstrap, paired_bootstrap, query_metrics
from pixseek.evaluation.queries import EvalQuery, RelevanceIndex
from pixseek.search.fusion import FUSIONS
from pixseek.worker.job import run_job
from pixseek.worker.spec import JobSpec

from pixseek.config import Settings
from pixseek.errors import CollectionNotFound, UserError
from pixseek.store import open_store

BASELINE = "text"


@dataclass
class QueryResult:
    query: EvalQuery
    relevant: set[str]
    rankings: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    generated_images: list[str] = field(default_factory=list)

    def delta(self, metric: str, strategy: str) -> float:
        if BASELINE not in self.metrics or strategy not in self.metrics:
            return 0.0
        return self.metrics[strategy][metric] - self.metrics[BASELINE][metric]


@dataclass
class EvalRun:
    collection: str
    strategies: list[str]
    ks: list[int]
    results: list[QueryResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def evaluated(self) -> list[QueryResult]:
        return [r for r in self.results if r.relevant]

    def metric_names(self) -> list[str]:
        names = ["AP", "MRR"]
        for k in self.ks:
            names += [f"R@{k}", f"P@{k}", f"AP@{k}", f"nDCG@{k}"]
        return names

    def best_generative_strategy(self) -> str | None:
        candidates = [s for s in self.strategies if s != BASELINE]
        if not candidates or not self.evaluated():
            return None
        return max(candidates, key=lambda s: self._mean(s, "AP"))

    def _mean(self, strategy: str, metric: str) -> float:
        values = [r.metrics[strategy][metric] for r in self.evaluated()]
        return sum(values) / len(values)

    def summary(self) -> dict[str, Any]:
        evaluated = self.evaluated()
        strategies = {
            s: {
                m: bootstrap([r.metrics[s][m] for r in evaluated]).as_dict()
                for m in self.metric_names()
            }
            for s in self.strategies
        }
        versus = {}
        if BASELINE in self.strategies:
            for s in self.strategies:
                if s == BASELINE:
                    continue
                versus[s] = {
                    m: paired_bootstrap(
                        [r.metrics[s][m] for r in evaluated],
                        [r.metrics[BASELINE][m] for r in evaluated],
                    ).as_dict()
                    for m in self.metric_names()
                }
        return {
            "collection": self.collection,
            "ks": self.ks,
            "queries_evaluated": len(evaluated),
            "queries_without_relevant": len(self.results) - len(evaluated),
            "strategies": strategies,
            "versus_text": versus,
            "notes": self.notes,
            "settings": self.settings,
        }


def parse_strategies(text: str) -> list[str]:
    strategies = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in FUSIONS]
    if unknown or not strategies:
        raise UserError(
            f"unknown strategy {', '.join(unknown) or '(none)'}; use a comma-separated "
            f"list of {', '.join(FUSIONS)}"
        )
    return list(dict.fromkeys(strategies))


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise UserError(f"--k must be comma-separated whole numbers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise UserError("--k values must be 1 or more")
    return ks


def run_eval(
    settings: Settings,
    collection: str,
    queries: Sequence[EvalQuery],
    strategies: list[str],
    ks: list[int],
    n_images: int = 4,
    depth: int = 100,
    alpha: float = 0.5,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalRun:
    store = open_store(settings)
    if store.get_collection(collection) is None:
        raise CollectionNotFound(collection)
    depth = max(depth, max(ks))
    relevance = RelevanceIndex(store, collection)
    run = EvalRun(
        collection,
        strategies,
        ks,
        settings={
            "clip_model": settings.clip_model,
            "t2i_model": settings.t2i_model,
            "n_images": n_images,
            "depth": depth,
            "alpha": alpha,
            "seed": seed,
        },
    )
    for number, query in enumerate(queries, start=1):
        result = QueryResult(query, relevance.resolve(query))
        if not result.relevant:
            run.results.append(result)
            continue
        for strategy in strategies:
            spec = JobSpec(
                prompt=query.text,
                collection=collection,
                n_images=0 if strategy == BASELINE else n_images,
                fusion=strategy,
                alpha=alpha,
                seed=seed,
                limit=depth,
            )
            job = run_job(settings, spec, job_id=f"eval-{query.id}-{strategy}")
            ranking = [(hit["id"], float(hit["score"])) for hit in job["hits"]]
            result.rankings[strategy] = ranking
            result.metrics[strategy] = query_metrics(ranking, result.relevant, ks)
            for hit in job["hits"][: max(ks)]:
                result.payloads[hit["id"]] = hit["payload"]
            if job["generated"] and not result.generated_images:
                result.generated_images = [record["path"] for record in job["generated"]]
            run.notes.extend(w for w in job.get("warnings", []) if w not in run.notes)
        run.results.append(result)
        if on_progress is not None:
            on_progress(number, len(queries))
    missing = len(run.results) - len(run.evaluated())
    if missing:
        run.notes.append(f"{missing} queries had no relevant item in the collection: left out")
    if not run.evaluated():
        raise UserError(
            "no query has a relevant item in this collection; check that the queries' file "
            "names or labels match what was ingested"
        )
    return run
