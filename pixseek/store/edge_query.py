"""Qdrant Edge query objects for pixseek's typed plans (EdgeStore.search and search_batch).

One translation per plan shape: Nearest, Recommend (sum of scores), RankFusion (prefetches and
RRF/DBSF), and Qdrant's MMR on top of either a single vector or the fused candidates.
"""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe

from pixseek.store.base import (
    Nearest,
    RankFusion,
    Recommend,
    SearchRequest,
    SparseVector,
    as_list,
)
from pixseek.store.options import StorageOptions


def query_request(request: SearchRequest, edge_filter: Any, params: Any) -> Any:
    """The QueryRequest for one search (payload included)."""
    plan = request.plan
    if isinstance(plan, RankFusion):
        prefetches = [
            qe.Prefetch(
                limit=max(plan.candidates, request.limit + request.offset),
                query=qe.Query.Nearest(vec(s.vector), using=s.using),
                filter=edge_filter,
                score_threshold=request.threshold,
                params=None if isinstance(s.vector, SparseVector) else params,
            )
            for s in plan.searches
        ]
        if request.diversity is not None:
            # MMR re-picks among the fused candidates (relevance: the diversity vector).
            fused = qe.Prefetch(
                limit=request.diversity_candidates, prefetches=prefetches, query=fusion(plan)
            )
            return qe.QueryRequest(
                limit=request.limit,
                offset=request.offset,
                prefetches=[fused],
                query=_mmr(request, request.diversity_vector),
                with_payload=True,
            )
        return qe.QueryRequest(
            limit=request.limit,
            offset=request.offset,
            prefetches=prefetches,
            query=fusion(plan),
            with_payload=True,
        )
    query = plan_query(plan)
    if request.diversity is not None:
        if not isinstance(plan, Nearest):
            raise ValueError("diversity needs a Nearest plan (the engine sends one)")
        query = _mmr(request, plan.vector)
    return qe.QueryRequest(
        limit=request.limit,
        offset=request.offset,
        query=query,
        filter=edge_filter,
        score_threshold=request.threshold,
        with_payload=True,
        params=None if is_sparse(plan) else params,
    )


def _mmr(request: SearchRequest, vector: Any) -> Any:
    if vector is None:
        raise ValueError("MMR over fused candidates needs request.diversity_vector")
    # Edge's lambda is the relevance share (1 = plain order); pixseek's diversity is 1 - lambda,
    # as the server API's `diversity` is.
    return qe.Mmr(
        vec(vector),
        1.0 - float(request.diversity or 0.0),
        request.diversity_candidates,
        using=getattr(request.plan, "using", None) or "clip",
    )


def search_params(storage: StorageOptions) -> qe.SearchParams | None:
    if not storage.quantized and storage.hnsw_ef is None:
        return None
    quantization = None
    if storage.quantized:
        quantization = qe.QuantizationSearchParams(
            rescore=storage.rescore, oversampling=storage.effective_oversampling
        )
    return qe.SearchParams(hnsw_ef=storage.hnsw_ef, quantization=quantization)


def plan_query(plan: Nearest | Recommend) -> Any:
    if isinstance(plan, Nearest):
        return qe.Query.Nearest(vec(plan.vector), using=plan.using)
    return qe.Query.RecommendSumScores(
        qe.RecommendQuery(
            positives=[as_list(v) for v in plan.positives],
            negatives=[as_list(v) for v in plan.negatives],
        ),
        using=plan.using,
    )


def vec(vector: Any) -> Any:
    if isinstance(vector, SparseVector):
        return qe.SparseVector(vector.indices, vector.values)
    return as_list(vector)


def is_sparse(plan: Any) -> bool:
    return isinstance(plan, Nearest) and isinstance(plan.vector, SparseVector)


def fusion(plan: RankFusion) -> Any:
    if plan.fusion == "dbsf":
        return qe.Fusion.Dbsf()
    return qe.Fusion.Rrf(k=plan.k, weights=plan.weights)
