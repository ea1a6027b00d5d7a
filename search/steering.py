"""Steering a search: relevance feedback, diversity (Qdrant's MMR) and adaptive cutoffs.

Called by `search.engine` (`plan_search`, `search_page`, `execute`), so every caller (CLI, API,
worker, evaluation) steers the same way.
"""

from __future__ import annotations

import numpy as np
from pixseek.search.cutoff import Cutoff, apply_cutoff, background
from pixseek.search.engine import (
    PlannedSearch,
    SearchPage,
    as_nearest,
    execute,
    is_sparse,
    just_below,
)
from pixseek.search.text_encoder import unit

from pixseek.errors import InputError, UserError
from pixseek.store.base import (
    Hit,
    Nearest,
    RankFusion,
    SearchRequest,
    SparseVector,
    VectorStore,
)

MMR_CANDIDATES = 200  # the pool Qdrant's MMR picks a diverse list from


# Rocchio's weights (SMART's defaults): the query, the mean of the good marks, the mean of the
# bad marks. Means, not sums: Qdrant's sum-of-scores recommend counts each mark as much as the
# query, so eight bad marks outweigh it, and as CLIP image embeddings share one common
# direction, subtracting many of them ranks away from every image (on coco_mini with the tiny
# random test model, a round of top-10 marks lowered AP 0.036 -> 0.031; evaluation/feedback.py).
ROCCHIO_QUERY, ROCCHIO_GOOD, ROCCHIO_BAD = 1.0, 0.75, 0.15


def feedback_plan(
    query: np.ndarray | None, goods: list[np.ndarray], bads: list[np.ndarray]
) -> tuple[Nearest, float]:
    """Relevance feedback (Rocchio): the query moved towards the mean of the good marks and
    away from the mean of the bad ones, searched as one direction, so scores stay cosines. Marks
    are vectors, not ids, so marked points stay eligible: good ones rise, bad ones sink."""
    if query is None and not goods:
        raise UserError("--bad marks need a query (or a --good mark) to steer; add query words")
    direction = np.zeros_like(query if query is not None else goods[0])
    if query is not None:
        direction = direction + ROCCHIO_QUERY * query
    if goods:
        direction = direction + ROCCHIO_GOOD * np.mean(goods, axis=0)
    if bads:
        direction = direction - ROCCHIO_BAD * np.mean(bads, axis=0)
    if float(np.linalg.norm(direction)) < 1e-6:
        raise UserError("the good and bad marks cancel the query out; drop some marks")
    return Nearest(unit(direction.astype(np.float32))), 1.0


def check_diversity(diversity: float | None, collapse: str | None = None) -> None:
    if diversity is None:
        return
    if not 0.0 <= diversity <= 1.0:
        raise InputError("diversity must be between 0 (plain relevance order) and 1 (most diverse)")
    if collapse is not None:
        raise InputError("diversity and collapse both re-pick the list; use one of them")


def with_cutoff(
    store: VectorStore,
    collection: str,
    planned: PlannedSearch,
    limit: int,
    offset: int,
    threshold: float | None,
    collapse: str | None,
    diversity: float | None,
    cutoff: Cutoff,
) -> SearchPage:
    if isinstance(planned.plan, RankFusion) or is_sparse(planned.plan):
        raise UserError(
            "cutoffs compare cosine similarities and work with dense searches only; "
            "keyword, hybrid and fused scores are BM25 and rank-fusion scores"
        )
    # The top score of the whole query, whatever the page: the list's first hit.
    hits = execute(store, collection, planned, offset + limit, 0, threshold, collapse, diversity)
    top = max((h.score for h in hits), default=None)
    bg = None
    if cutoff.kind == "z":
        bg = background(store, collection, np.asarray(as_nearest(planned.plan).vector))
    result = apply_cutoff(hits, cutoff, top, bg)
    return SearchPage(result.hits[offset : offset + limit], result.ended_by)


def diverse_page(
    store: VectorStore,
    collection: str,
    planned: PlannedSearch,
    limit: int,
    offset: int,
    threshold: float | None,
    diversity: float,
) -> list[Hit]:
    """Qdrant's MMR. Its greedy picks are prefix-stable for a fixed candidate pool, so a page is
    the slice of one longer pick; the pool grows only for pages past MMR_CANDIDATES results."""
    wanted = offset + limit
    plan = planned.plan
    vector = None
    scale = planned.scale
    dense = []
    if isinstance(plan, RankFusion):
        dense = [s.vector for s in plan.searches if not isinstance(s.vector, SparseVector)]
    elif not is_sparse(plan):
        dense = [plan]
    if not dense:
        raise UserError("diversity needs a picture-based (dense) query; keyword-only has none")
    if isinstance(plan, RankFusion):
        vector = unit(np.mean([np.asarray(v, dtype=np.float32) for v in dense], axis=0))
    else:
        plan, scale = as_nearest(plan), 1.0  # same ranking; MMR needs one query vector
    request = SearchRequest(
        plan,
        wanted,
        0,
        planned.filter,
        None if threshold is None else just_below(threshold * scale),
        diversity=diversity,
        diversity_candidates=max(MMR_CANDIDATES, wanted),
        diversity_vector=vector,
    )
    hits = store.search(collection, request)
    scored = [Hit(id=h.id, score=h.score / scale, payload=h.payload) for h in hits]
    if threshold is not None and not isinstance(plan, RankFusion):
        scored = [hit for hit in scored if hit.score >= threshold]
    return scored[offset : offset + limit]
