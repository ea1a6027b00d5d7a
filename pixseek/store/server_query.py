"""qdrant-client query objects and collection parameters for ServerStore's typed plans."""

from __future__ import annotations

from typing import Any

from qdrant_client import models

from pixseek.store.base import RankFusion, SearchRequest, SparseVector, as_list
from pixseek.store.options import StorageOptions

# IDF computed by Qdrant over the stored points; term frequencies come from pixseek.keywords.
SPARSE = models.SparseVectorParams(modifier=models.Modifier.IDF)


def vec(vector: Any) -> Any:
    if isinstance(vector, SparseVector):
        return models.SparseVector(indices=vector.indices, values=vector.values)
    return as_list(vector)


def mmr(request: SearchRequest, vector: Any) -> models.NearestQuery:
    if vector is None:
        raise ValueError("MMR over fused candidates needs request.diversity_vector")
    return models.NearestQuery(
        nearest=vec(vector),
        mmr=models.Mmr(diversity=request.diversity, candidates_limit=request.diversity_candidates),
    )


def fusion(plan: RankFusion) -> Any:
    if plan.fusion == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    return models.RrfQuery(rrf=models.Rrf(k=plan.k, weights=plan.weights))


def vector_params(size: int, storage: StorageOptions) -> models.VectorParams:
    quantization: Any = None
    if storage.quantization == "int8":
        quantization = models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, quantile=0.99, always_ram=True
            )
        )
    elif storage.quantization == "binary":
        quantization = models.BinaryQuantization(
            binary=models.BinaryQuantizationConfig(
                always_ram=True,
                query_encoding=models.BinaryQuantizationQueryEncoding.SCALAR8BITS,
            )
        )
    hnsw = None
    if storage.hnsw_m is not None or storage.hnsw_ef_construct is not None:
        hnsw = models.HnswConfigDiff(m=storage.hnsw_m, ef_construct=storage.hnsw_ef_construct)
    return models.VectorParams(
        size=size,
        distance=models.Distance.COSINE,
        on_disk=storage.on_disk or None,
        hnsw_config=hnsw,
        quantization_config=quantization,
    )


def search_params(storage: StorageOptions) -> models.SearchParams | None:
    if not storage.quantized and storage.hnsw_ef is None:
        return None
    quantization = None
    if storage.quantized:
        quantization = models.QuantizationSearchParams(
            rescore=storage.rescore, oversampling=storage.effective_oversampling
        )
    return models.SearchParams(hnsw_ef=storage.hnsw_ef, quantization=quantization)
