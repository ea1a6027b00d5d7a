"""Keyword and hybrid search: BM25 over the `text` sparse vector, fused with CLIP in one query.

Modes:
  dense    CLIP only (what pixseek always did).
  keyword  BM25 over the keyword index (OCR text, captions, labels, file-name words); scores are
           BM25 scores, not cosines.
  hybrid   one Qdrant query with two prefetches (CLIP and BM25) fused by RRF (default, k=60) or
           DBSF; scores are fusion scores.
  auto     hybrid for plain text queries on collections with OCR text, else dense.

`ocr:"exit 12"` and `text:"exit 12"` query terms are BM25 terms: a query made only of them is a
keyword search, one that mixes them with CLIP terms is hybrid. `ocr:` also requires the words
in the point's OCR text (a full-text filter), as `--where 'ocr~exit 12'` does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from pixseek.search.engine import DEFAULT_MAX_PIXELS, PlannedSearch, as_nearest, plan_search
from pixseek.search.query import QuerySpec, Term
from pixseek.search.text_encoder import QueryEncoder

from pixseek.errors import InputError, UserError
from pixseek.keywords import query_vector
from pixseek.store.base import (
    TEXT_VECTOR,
    CollectionInfo,
    Nearest,
    RankFusion,
    VectorStore,
)

if TYPE_CHECKING:
    from qdrant_client import models

Mode = Literal["auto", "dense", "keyword", "hybrid"]
MODES: tuple[str, ...] = ("auto", "dense", "keyword", "hybrid")
FUSIONS: tuple[str, ...] = ("rrf", "dbsf")
OCR_METADATA_KEY = "ocr"  # set on a collection by `pixseek enrich ocr` / `ingest --ocr`
CANDIDATES = 100  # per prefetch in hybrid mode


def keyword_query_text(spec: QuerySpec, mode: str) -> str | None:
    """The words the BM25 side searches for: keyword terms, or in keyword/hybrid mode a plain
    text query's words."""
    words = [t.value for t in spec.keyword_terms]
    if words:
        return " ".join(words)
    if mode in ("keyword", "hybrid", "auto"):
        texts = [t for t in spec.terms if isinstance(t, Term) and t.kind == "text"]
        if len(texts) == 1 and len(spec.terms) == 1 and texts[0].weight == 1.0:
            return texts[0].value
    return None


def resolve_mode(info: CollectionInfo, spec: QuerySpec, mode: str, threshold: float | None) -> str:
    if mode not in MODES:
        raise InputError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    has_index = TEXT_VECTOR in info.sparse_vectors
    dense_terms = len(spec.terms) - len(spec.keyword_terms)
    if spec.keyword_terms:
        if mode == "dense":
            raise UserError('ocr:"..." and text:"..." terms are keyword terms; drop --mode dense')
        mode = "hybrid" if dense_terms else "keyword"
    elif mode == "auto":
        ocr = bool((info.metadata or {}).get(OCR_METADATA_KEY))
        plain = keyword_query_text(spec, "auto") is not None
        mode = "hybrid" if has_index and ocr and plain and threshold is None else "dense"
    if mode != "dense":
        if not has_index:
            raise UserError(
                f"collection {info.name!r} has no keyword index; run "
                f"`pixseek enrich ocr -c {info.name}` to build it, or use --mode dense"
            )
        if threshold is not None:
            raise UserError(
                "--threshold is a cosine similarity and works with --mode dense only; "
                "keyword and hybrid scores are BM25 and fusion scores"
            )
    return mode


def plan_with_mode(
    store: VectorStore,
    encoder: QueryEncoder | None,
    info: CollectionInfo,
    spec: QuerySpec,
    filter: models.Filter | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    mode: str = "auto",
    fusion: str = "rrf",
    threshold: float | None = None,
) -> PlannedSearch:
    mode = resolve_mode(info, spec, mode, threshold)
    if mode == "dense":
        return plan_search(store, encoder, info, spec, filter, max_pixels)
    if fusion not in FUSIONS:
        raise InputError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
    if any(t.weight < 0 for t in spec.keyword_terms):
        raise UserError('keyword terms cannot be negative; use --where "ocr!~word" to exclude')
    text = keyword_query_text(spec, mode)
    if text is None:
        raise UserError(f"--mode {mode} needs query words (or ocr:/text: terms) to match")
    sparse = query_vector(text)
    if sparse is None:
        raise UserError(f"the query {text!r} has no searchable word (only stop words?)")
    filter = _with_ocr_words(filter, spec)
    keyword = Nearest(sparse, using=TEXT_VECTOR)
    dense_spec = replace(spec, terms=tuple(t for t in spec.terms if t not in spec.keyword_terms))
    if (mode == "keyword" or not dense_spec.terms) and (spec.good or spec.bad):
        raise UserError(
            "feedback marks steer the picture (CLIP) ranking, which keyword mode has not; "
            "use --mode hybrid or dense"
        )
    if mode == "keyword" or not dense_spec.terms:
        return PlannedSearch(keyword, 1.0, filter, f"keyword: {text}")
    dense = plan_search(store, encoder, info, dense_spec, filter, max_pixels)
    fused = RankFusion(
        [as_nearest(dense.plan), keyword],
        candidates=CANDIDATES,
        fusion=fusion,  # type: ignore[arg-type]
    )
    return PlannedSearch(
        fused, 1.0, dense.filter, f"hybrid ({fusion}): {dense.description} | {text}"
    )


def _with_ocr_words(filter: models.Filter | None, spec: QuerySpec) -> models.Filter | None:
    if not any(t.kind == "ocr" for t in spec.keyword_terms):
        return filter
    from qdrant_client import models  # not at import: a plain text search never needs it

    conditions = [
        models.FieldCondition(key="ocr", match=models.MatchText(text=t.value))
        for t in spec.keyword_terms
        if t.kind == "ocr"
    ]
    return models.Filter(must=[*(([filter]) if filter else []), *conditions])
