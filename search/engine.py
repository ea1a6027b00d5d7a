"""The one search code path shared by the CLI, the worker and the HTTP API: `run_search`.

How a query becomes a Qdrant request (every term is first a unit vector in the CLIP space):

- one positive term, nothing else: `Nearest` on that vector.
- several terms, all of weight 1 (e.g. `horse + stripes`, `dog -:grass`, several --like): Qdrant's
  recommend API with the sum_scores strategy, which scores a point x by
  sum(cos(p_i, x)) - sum(cos(n_j, x)). With unit examples that equals v . x/|x| for the direction
  v = sum(p_i) - sum(n_j), so dividing Qdrant's score by |v| gives exactly cos(v, x): scores stay
  cosine similarities whatever the query shape, and `--threshold` means the same everywhere.
- any weight other than 1 (`2:dog`, `-0.5:grass`): Qdrant's recommend API has no per-example
  weight (and normalises every example, so scaling a vector does not help), so the engine sends
  the weighted direction v = sum(w_i p_i) - sum(u_j n_j) as one `Nearest` query. It ranks exactly
  as a weighted sum_scores would, and its score is again cos(v, x).
- a composed term (reference image or point + text modifier) is one positive vector,
  normalise((1 - lambda) * reference + lambda * text); Qdrant has no API for composition.

- relevance feedback (`--good`/`--bad` marks): Rocchio's weighted means around the query
  direction, searched as one `Nearest` (`_feedback_plan` says why not sum-of-scores recommend).
- diversity: Qdrant's MMR on the query direction (over the fused candidates for fused plans).

Stored points used as examples are left out of the results (as Qdrant's recommend-by-id does);
feedback marks are not examples: they stay eligible.
Pagination is stable: ties in score are broken by point id, and the page is cut from a window
that holds every point tied at the page boundary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pixseek.search.query import Composed, QuerySpec, Term, nothing_to_search
from pixseek.search.text_encoder import QueryEncoder, unit

from pixseek.errors import CollectionNotFound, InputError, UserError
from pixseek.models.registry import check_compatible
from pixseek.store.base import (
    CLIP_VECTOR,
    CollectionInfo,
    Hit,
    Nearest,
    QueryPlan,
    RankFusion,
    Recommend,
    SearchRequest,
    SparseVector,
    VectorStore,
    is_point_id,
)

if TYPE_CHECKING:
    from PIL import Image
    from pixseek.search.cutoff import Cutoff
    from qdrant_client import models

MAX_LIMIT = 1000
DEFAULT_MAX_PIXELS = 178_956_970


@dataclass
class PlannedSearch:
    """The Qdrant query for a spec, and how to turn its scores into cosine similarities."""

    plan: QueryPlan  # Nearest, Recommend, or RankFusion for fused/generated queries
    scale: float  # Qdrant score / scale = cosine similarity to the query direction
    filter: models.Filter | None
    description: str


class _Resolver:
    """Turns terms into unit vectors, loading the model and the stored points only when needed."""

    def __init__(
        self,
        store: VectorStore,
        encoder: QueryEncoder | None,
        info: CollectionInfo,
        spec: QuerySpec,
        max_pixels: int,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.info = info
        self.spec = spec
        self.max_pixels = max_pixels
        self.points = self._load_points([*spec.point_ids, *spec.good, *spec.bad])
        self._checked = False

    def _load_points(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        bad = [i for i in ids if not is_point_id(i)]
        if bad:
            raise InputError(
                f"{bad[0]!r} is not a point id; point ids are UUIDs, shown by `pixseek search --json`",
                api_message=f"{bad[0]!r} is not a point id; point ids are UUIDs, shown in search results",
            )
        found = {
            p.id: p.vectors.get(CLIP_VECTOR)
            for p in self.store.retrieve(self.info.name, list(dict.fromkeys(ids)), True)
        }
        vectors: dict[str, np.ndarray] = {}
        for point_id in ids:
            vector = found.get(point_id)
            if vector is None:
                raise InputError(
                    f"point {point_id} is not in collection {self.info.name!r}; "
                    "ids are shown by `pixseek search --json`",
                    api_message=f"point {point_id} is not in collection {self.info.name!r}; "
                    "ids are shown in search results",
                )
            vectors[point_id] = unit(np.asarray(vector, dtype=np.float32))
        return vectors

    def _model(self) -> QueryEncoder:
        if self.encoder is None:
            raise UserError("this query needs the CLIP model, but no encoder was given")
        if not self._checked:
            check_model(self.info, self.encoder)
            self._checked = True
        return self.encoder

    def vector(self, term: Term | Composed) -> np.ndarray:
        if isinstance(term, Composed):
            reference = self.vector(term.reference)
            text = self._model().encode_text(term.modifier, self.spec.ensemble)
            return unit((1.0 - term.mix) * reference + term.mix * text)
        if term.kind == "text":
            return self._model().encode_text(term.value, self.spec.ensemble)
        if term.kind == "point":
            return self.points[term.value]
        encoder = self._model()
        return encoder.encode_image(load_query_image(term.value, self.max_pixels))


def check_model(info: CollectionInfo, encoder: QueryEncoder) -> None:
    """Refuse to compare vectors from different CLIP models (one-line Misconfigured)."""
    configured = {CLIP_VECTOR: (encoder.identifier, encoder.dim)}
    check_compatible(info.name, info.metadata, info.vectors, configured)


def load_query_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read and decode a query image (EXIF orientation applied, RGB); one-line errors."""
    from pixseek.decode import ImageRejected, decode_image

    file = Path(os.path.expanduser(path))
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise UserError(f"query image {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"query image {path} is a folder, not an image file") from None
    except OSError as exc:
        raise UserError(f"cannot read query image {path}: {exc.strerror or exc}") from None
    try:
        return decode_image(data, max_pixels).image
    except ImageRejected as exc:
        raise UserError(f"cannot use {path} as a query image: {exc}") from None


def plan_search(
    store: VectorStore,
    encoder: QueryEncoder | None,
    info: CollectionInfo,
    spec: QuerySpec,
    filter: models.Filter | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PlannedSearch:
    if not spec.terms and not spec.good:
        raise nothing_to_search()
    if not spec.has_positive:
        raise UserError("the query has only negative terms; add a positive term to search for")
    if CLIP_VECTOR not in info.vectors:
        raise UserError(f"collection {info.name!r} has no {CLIP_VECTOR!r} vectors to search")
    resolver = _Resolver(store, encoder, info, spec, max_pixels)
    weighted = [(resolver.vector(term), term.weight) for term in spec.terms]
    direction = np.sum([w * v for v, w in weighted], axis=0) if weighted else None
    norm = 0.0 if direction is None else float(np.linalg.norm(direction))
    if weighted and norm < 1e-6:
        raise UserError("the query's positive and negative terms cancel out; change the weights")
    if spec.good or spec.bad:
        from pixseek.search.steering import feedback_plan

        goods = [resolver.points[i] for i in spec.good]
        bads = [resolver.points[i] for i in spec.bad]
        query = None if direction is None else direction / norm
        plan, scale = feedback_plan(query, goods, bads)
    elif len(weighted) > 1 and all(abs(w) == 1.0 for _, w in weighted):
        plan: Nearest | Recommend = Recommend(
            positives=[v for v, w in weighted if w > 0],
            negatives=[v for v, w in weighted if w < 0],
        )
        scale = norm
    else:
        plan, scale = Nearest(direction / norm), 1.0
    if spec.exclude_examples and spec.point_ids:
        from qdrant_client import models  # not at import: a plain text search never needs it

        examples = models.HasIdCondition(has_id=list(dict.fromkeys(spec.point_ids)))
        filter = models.Filter(must=[filter] if filter else None, must_not=[examples])
    return PlannedSearch(plan, scale, filter, spec.describe())


def as_nearest(plan: Nearest | Recommend | RankFusion) -> Nearest:
    """sum_scores recommend ranks like one Nearest on the direction sum(pos) - sum(neg)."""
    if isinstance(plan, Nearest):
        return plan
    if isinstance(plan, Recommend):
        direction = np.sum([np.asarray(v) for v in plan.positives], axis=0)
        if plan.negatives:
            direction = direction - np.sum([np.asarray(v) for v in plan.negatives], axis=0)
        return Nearest(unit(direction.astype(np.float32)), using=plan.using)
    raise UserError("hybrid mode cannot fuse an already fused query")


@dataclass
class SearchPage:
    hits: list[Hit]
    ended_by: str | None = None  # why the list ends before `limit` (a cutoff), for the user


def run_search(
    store: VectorStore,
    encoder: QueryEncoder | None,
    collection: str,
    spec: QuerySpec,
    **options: Any,
) -> list[Hit]:
    """`search_page(...).hits`: the hits alone, for evaluation, benchmarks and tests; the
    options are search_page's."""
    return search_page(store, encoder, collection, spec, **options).hits


def search_page(
    store: VectorStore,
    encoder: QueryEncoder | None,
    collection: str,
    spec: QuerySpec,
    filter: models.Filter | None = None,
    limit: int = 10,
    offset: int = 0,
    threshold: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    collapse: str | None = None,
    mode: str = "auto",
    fusion: str = "rrf",
    diversity: float | None = None,
    cutoff: Cutoff | None = None,
) -> SearchPage:
    """Search `collection`; scores are cosine similarities to the query, best first, with the
    reason a list ends early (a cutoff).

    `collapse="near"` returns one hit per near-duplicate group (search/collapse.py).
    `mode` keyword/hybrid/auto: BM25 and fused rankings (search/keyword.py; other scores).
    `diversity` (0-1): Qdrant's MMR re-picks the list; `cutoff`: search/cutoff.py.
    `encoder` may be None for queries made only of stored points (--like).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise UserError(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise UserError("offset must be 0 or more")
    from pixseek.search.steering import check_diversity, with_cutoff

    check_diversity(diversity, collapse)
    info = store.get_collection(collection)
    if info is None:
        raise CollectionNotFound(collection)
    from pixseek.search.keyword import plan_with_mode  # imports this module

    if cutoff is not None and mode == "auto" and not spec.keyword_terms:
        mode = "dense"  # cutoffs need cosine scores, as --threshold does
    planned = plan_with_mode(
        store, encoder, info, spec, filter, max_pixels, mode, fusion, threshold
    )
    if collapse is not None:
        from pixseek.search.collapse import check_collapse

        check_collapse(collapse, info)
    if cutoff is None:
        return SearchPage(
            execute(store, collection, planned, limit, offset, threshold, collapse, diversity)
        )
    return with_cutoff(
        store, collection, planned, limit, offset, threshold, collapse, diversity, cutoff
    )


def is_sparse(plan: QueryPlan) -> bool:
    return isinstance(plan, Nearest) and isinstance(plan.vector, SparseVector)


def execute(
    store: VectorStore,
    collection: str,
    planned: PlannedSearch,
    limit: int,
    offset: int = 0,
    threshold: float | None = None,
    collapse: str | None = None,
    diversity: float | None = None,
) -> list[Hit]:
    """The one executor every plan goes through (plain, recommend, composed, fused/generated):
    threshold scaling, tie-complete windows, stable paging and score reporting are the same."""
    store_threshold = None if threshold is None else just_below(threshold * planned.scale)
    if diversity is not None:
        from pixseek.search.steering import diverse_page

        return diverse_page(store, collection, planned, limit, offset, threshold, diversity)
    if collapse is not None:
        from pixseek.search.collapse import collapsed_page, group_sizes

        page = collapsed_page(
            lambda n: _window(store, collection, planned, store_threshold, n), offset, limit
        )
        sizes = group_sizes(store, collection, page, planned.filter)
        return [
            Hit(id=h.id, score=h.score / planned.scale, payload=h.payload, group_size=size)
            for h, size in zip(page, sizes, strict=True)
        ]
    hits = _window(store, collection, planned, store_threshold, offset + limit)
    scored = [Hit(id=hit.id, score=hit.score / planned.scale, payload=hit.payload) for hit in hits]
    if threshold is not None and not isinstance(planned.plan, RankFusion):
        scored = [hit for hit in scored if hit.score >= threshold]  # cosine scores only
    return scored[offset : offset + limit]


def just_below(threshold: float) -> float:
    """One float32 step below: Qdrant keeps scores strictly above its threshold, but a score
    shown to the user and given back as --threshold must keep that very hit (score >= threshold;
    `execute` then drops whatever lies below the exact value)."""
    return float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))


def _window(
    store: VectorStore,
    collection: str,
    planned: PlannedSearch,
    threshold: float | None,
    wanted: int,
) -> list[Hit]:
    """The top `wanted` hits ordered by (score desc, id), with the boundary tie group complete."""
    fetch = wanted + 1
    while True:
        request = SearchRequest(planned.plan, fetch, 0, planned.filter, threshold)
        hits = store.search(collection, request)
        if len(hits) < fetch or hits[-1].score < hits[wanted - 1].score:
            break
        fetch *= 2  # the last hit ties with the page boundary: widen until the tie group ends
    hits.sort(key=lambda hit: (-hit.score, hit.id))
    return hits[:wanted]
