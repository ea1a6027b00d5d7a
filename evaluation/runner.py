"""Run every strategy on the same queries through the same code paths users get.

`text` is exactly `pixseek search`: the query (verbatim text, or the search query language) goes
through `search.engine.run_search`, so eval and search rank identically. The generative strategies
are exactly `pixseek search --generate`: one job per (query, strategy) run in-process
(`worker.job.run_job`). Generated images are cached by (model, prompt, seed, steps, size,
guidance, negative prompt), so all strategies of a query share the same pictures and a re-run
generates nothing. Rankings keep the raw float scores the store returned; nothing is rounded
before the metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pixseek.evaluation.feedback import RoundResult, feedback_round, summarize
from pixseek.evaluation.metrics import bootstrap, metric_names, paired_bootstrap, query_metrics
from pixseek.evaluation.provenance import run_settings
from pixseek.evaluation.queries import EvalQuery, Relevance, RelevanceIndex, templated_by
from pixseek.search.engine import check_model, run_search
from pixseek.search.fusion import FUSIONS
from pixseek.search.query import Term
from pixseek.search.text_encoder import query_encoder
from pixseek.worker.job import run_job
from pixseek.worker.records import JobResult
from pixseek.worker.spec import JobSpec

from pixseek.config import Settings
from pixseek.errors import CollectionNotFound, InputError
from pixseek.store import open_store

BASELINE = "text"
# Search modes as strategies (search/keyword.py): `dense` is the baseline's CLIP ranking, named
# for side-by-side runs with `keyword` (BM25 over OCR text, captions, labels, file names) and
# `hybrid` (both fused by RRF in one Qdrant query).
SEARCH_MODES = ("dense", "keyword", "hybrid")
Ranking = list[tuple[str, float]]


@dataclass
class QueryResult:
    query: EvalQuery
    relevance: Relevance
    count_missing: bool = True
    rankings: dict[str, Ranking] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    generated_images: list[str] = field(default_factory=list)

    @property
    def relevant(self) -> set[str]:
        """The relevant point ids present in the collection."""
        return self.relevance.present

    @property
    def n_relevant(self) -> int:
        """The recall/AP denominator: listed items (missing ones included) unless restricted."""
        return self.relevance.listed if self.count_missing else len(self.relevance.present)

    def delta(self, metric: str, strategy: str) -> float:
        if BASELINE not in self.metrics or strategy not in self.metrics:
            return 0.0
        return self.metrics[strategy][metric] - self.metrics[BASELINE][metric]


@dataclass
class EvalRun:
    collection: str
    strategies: list[str]
    ks: list[int]
    count_missing: bool = True
    results: list[QueryResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    feedback_k: int = 0  # a simulated feedback round from each top-k (evaluation/feedback.py)
    feedback: dict[str, list[RoundResult]] = field(default_factory=dict)

    def evaluated(self) -> list[QueryResult]:
        return [r for r in self.results if r.n_relevant]

    def metric_names(self) -> list[str]:
        return metric_names(self.ks)

    def best_generative_strategy(self) -> str | None:
        candidates = [s for s in self.strategies if s != BASELINE and s not in SEARCH_MODES]
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
            "relevant_missing": sum(len(r.relevance.missing) for r in evaluated),
            "queries_with_missing": sum(1 for r in evaluated if r.relevance.missing),
            "relevant_missing_counted": self.count_missing,
            "strategies": strategies,
            "versus_text": versus,
            "notes": self.notes,
            "settings": self.settings,
            **({"feedback": summarize(self.feedback, self.ks)} if self.feedback_k else {}),
        }


def parse_strategies(text: str) -> list[str]:
    strategies = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in FUSIONS and s not in SEARCH_MODES]
    if unknown or not strategies:
        raise InputError(
            f"unknown strategy {', '.join(unknown) or '(none)'}; use a comma-separated "
            f"list of {', '.join([*FUSIONS, *SEARCH_MODES])}"
        )
    return list(dict.fromkeys(strategies))


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise InputError(f"--k must be comma-separated whole numbers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise InputError("--k values must be 1 or more")
    return ks


def _text_terms(query: EvalQuery) -> list[str]:
    if query.syntax != "search":
        return [query.text]
    spec = query.search_spec(True)
    return [t.value for t in spec.terms if isinstance(t, Term) and t.kind == "text"]


def ensemble_for(query: EvalQuery, run_default: bool, templates: Sequence[str]) -> bool:
    """Whether prompt templates wrap this query. Never a template around a template: verbatim
    text that already is a filled template ("a photo of a tench.") is embedded as written."""
    if not templates or not query.uses_ensemble(run_default):
        return False
    return query.syntax == "search" or templated_by(query.text, templates) is None


def _job_parts(job: JobResult) -> tuple[list[tuple[str, float, dict[str, Any]]], list[str]]:
    """(id, raw score, payload) of a job's hits best first, and its generated image paths."""
    hits = [(hit.id, float(hit.score), hit.payload) for hit in job.hits]
    return hits, [image.path for image in job.generated]


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
    count_missing: bool = True,
    ensemble: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    queries_source: dict[str, Any] | None = None,
    feedback_k: int = 0,
) -> EvalRun:
    store = open_store(settings)
    info = store.get_collection(collection)
    if info is None:
        raise CollectionNotFound(collection)
    encoder = query_encoder(settings)
    check_model(info, encoder)
    depth = max(depth, max(ks))
    relevance = RelevanceIndex(store, collection)
    generative = [s for s in strategies if s != BASELINE and s not in SEARCH_MODES]
    run = EvalRun(collection, strategies, ks, count_missing, feedback_k=feedback_k)
    templates = encoder.templates
    for number, query in enumerate(queries, start=1):
        wrap = ensemble_for(query, ensemble, templates)
        result = QueryResult(query, relevance.resolve(query), count_missing)
        run.results.append(result)
        if not result.n_relevant:
            continue
        for strategy in strategies:
            if strategy == BASELINE or strategy in SEARCH_MODES:
                hits = run_search(
                    store,
                    encoder,
                    collection,
                    query.search_spec(wrap),
                    limit=depth,
                    max_pixels=settings.max_image_pixels,
                    mode="dense" if strategy == BASELINE else strategy,
                )
                found = [(h.id, float(h.score), h.payload) for h in hits]
            else:
                spec = JobSpec(
                    prompt=query.prompt,
                    collection=collection,
                    n_images=n_images,
                    fusion=strategy,
                    alpha=alpha,
                    seed=seed,
                    limit=depth,
                    ensemble=wrap,
                )
                job = run_job(settings, spec, job_id=f"eval-{query.id}-{strategy}")
                found, generated = _job_parts(job)
                if generated and not result.generated_images:
                    result.generated_images = generated
                run.notes.extend(w for w in job.warnings if w not in run.notes)
            ranking = [(point_id, score) for point_id, score, _ in found]
            result.rankings[strategy] = ranking
            result.metrics[strategy] = query_metrics(
                ranking, result.relevant, ks, result.n_relevant
            )
            for point_id, _, payload in found[: max(ks)]:
                result.payloads[point_id] = payload
            if feedback_k and strategy != "keyword":
                mode = strategy if strategy in SEARCH_MODES else "dense"
                spec = query.search_spec(wrap)

                def rerun(good: list[str], bad: list[str], spec=spec, mode=mode) -> Ranking:
                    marked = replace(spec, good=tuple(good), bad=tuple(bad))
                    hits = run_search(
                        store, encoder, collection, marked, limit=depth,
                        max_pixels=settings.max_image_pixels, mode=mode,
                    )  # fmt: skip
                    return [(h.id, float(h.score)) for h in hits]

                round_result = feedback_round(
                    ranking, result.relevant, ks, result.n_relevant, feedback_k, rerun
                )
                run.feedback.setdefault(strategy, []).append(round_result)
        if on_progress is not None:
            on_progress(number, len(queries))
    if not any(r.relevant for r in run.results):
        raise InputError(
            "no query has a relevant item in this collection; check that the queries' file "
            "names or labels match what was ingested"
        )
    _add_notes(run, queries, generative, ensemble, templates)
    ensembled = sum(1 for q in queries if ensemble_for(q, ensemble, templates))
    generation = None
    if generative:
        spec = JobSpec(prompt="x", collection=collection, n_images=n_images, seed=seed)
        params = spec.generation(settings)
        generation = {
            "n_images": n_images,
            "seed": seed,
            "steps": params.steps,
            "width": params.width,
            "height": params.height,
            "guidance": params.guidance,
            "negative_prompt": params.negative_prompt,
            "alpha": alpha,
        }
    syntaxes = Counter(q.syntax for q in queries)
    run.settings = run_settings(
        settings,
        info,
        encoder.identifier,
        strategies,
        ks,
        depth,
        count_missing,
        ensemble,
        ensembled,
        generation,
        {**(queries_source or {}), "count": len(queries), "syntax": dict(syntaxes)},
    )
    run.settings["text"]["search_mode"] = "dense"  # the `text` baseline: CLIP only
    return run


def _add_notes(
    run: EvalRun,
    queries: Sequence[EvalQuery],
    generative: list[str],
    ensemble: bool,
    templates: Sequence[str],
) -> None:
    without = len(run.results) - len(run.evaluated())
    if without:
        run.notes.append(f"{without} queries had no relevant item in the collection: left out")
    evaluated = run.evaluated()
    missing = sum(len(r.relevance.missing) for r in evaluated)
    if missing:
        listed = sum(r.relevance.listed for r in evaluated)
        how = (
            "counted in recall/AP/nDCG denominators (--present-only leaves them out)"
            if run.count_missing
            else "left out of the denominators (--present-only)"
        )
        run.notes.append(
            f"{missing} of {listed} listed relevant items (in "
            f"{sum(1 for r in evaluated if r.relevance.missing)} queries) are not in the "
            f"collection: {how}"
        )
    unwrapped = [
        q.id
        for q in queries
        if templates and q.syntax != "search" and q.uses_ensemble(ensemble)
        if templated_by(q.text, templates)
    ]
    if unwrapped:
        run.notes.append(
            f"{len(unwrapped)} queries (e.g. {unwrapped[0]!r}) already read like a prompt "
            "template: embedded as written, not wrapped in the templates again"
        )
    wrapped = [
        q.id
        for q in queries
        if q.syntax == "search" and ensemble_for(q, ensemble, templates)
        if any(templated_by(text, templates) for text in _text_terms(q))
    ]
    if wrapped:
        run.notes.append(
            f"{len(wrapped)} search-syntax queries (e.g. {wrapped[0]!r}) read like a prompt "
            "template and are wrapped again, as `pixseek search` does; give bare text or "
            'set "ensemble": false'
        )
    composite = [q.id for q in queries if not q.is_plain_text]
    if composite and generative:
        run.notes.append(
            f"{len(composite)} search-syntax queries have weights, negations or images; the "
            "generative strategies generate from their words as `pixseek search --generate` does"
        )
