"""Fusion strategies for generative retrieval: the text query plus images a diffusion model made of it.

"Visualize, then retrieve": the query text is turned into a few reference images, whose image
embeddings sit in the same region of embedding space as the photos we search (unlike the text
embedding, which CLIP's modality gap keeps apart from every image). Each strategy turns the text
vector t and the generated image vectors g_1..g_n (unit rows, per named vector) into one query plan
that the store runs as a single Qdrant request:

    text        t alone: the plain text search, for comparison
    generated   the mean of the generated images' embeddings, renormalised
                (with a DINOv2 vector as well: RRF of the CLIP mean and the DINOv2 mean)
    text+mean   unit(t + mean(g)): the centroid is not renormalised, so when the generated images
                agree (long centroid) they count about as much as the text, and when they disagree
                (short centroid) the text dominates
    weighted    unit(alpha * t + (1 - alpha) * unit(mean(g))): alpha is the text's share
    rrf         reciprocal-rank fusion of the text query and one query per generated image (and per
                image's DINOv2 vector), done by Qdrant as one query with one prefetch per vector;
                every list votes equally (standard RRF, k = 60)

`rrf` deliberately passes no per-list weights: Qdrant's weighted RRF scores a rank r of a list of
weight w as 1 / ((r + 1) / w + k - 1), which with k = 60 makes a low-weight list's top ranks count
*more* sharply, the opposite of what a "share" should do.

Scores are cosine similarities for the first four and RRF scores for `rrf` (and for `generated`
with DINOv2); a threshold always applies to cosine similarities (for RRF: to each prefetch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
from pixseek.search.text_encoder import unit

from pixseek.errors import UserError

if TYPE_CHECKING:  # the store pulls in qdrant-client (slow to import); the CLI needs FUSIONS only
    from pixseek.store.base import QueryPlan

DEFAULT_FUSION = "rrf"
RRF_K = 60


def _unit(vector: np.ndarray) -> np.ndarray:
    try:
        return unit(vector)
    except ValueError:
        raise UserError(
            "the fused query vector is zero; use another fusion or more images"
        ) from None


def _rows(vectors: np.ndarray) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32)
    if rows.ndim != 2 or len(rows) == 0:
        raise UserError("this fusion needs at least one generated image")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.clip(norms, 1e-12, None)


def score_kind(plan: QueryPlan) -> str:
    from pixseek.store.base import RankFusion

    return "rrf" if isinstance(plan, RankFusion) else "cosine"


def _text(t: np.ndarray, clip: np.ndarray, extra: Extra, alpha: float, k: int) -> QueryPlan:
    from pixseek.store.base import CLIP_VECTOR, Nearest

    return Nearest(t, CLIP_VECTOR)


def _generated(t: np.ndarray, clip: np.ndarray, extra: Extra, alpha: float, k: int) -> QueryPlan:
    from pixseek.store.base import CLIP_VECTOR, Nearest, RankFusion

    searches = [Nearest(_unit(clip.mean(axis=0)), CLIP_VECTOR)]
    searches += [Nearest(_unit(rows.mean(axis=0)), name) for name, rows in extra.items()]
    return searches[0] if len(searches) == 1 else RankFusion(searches, None, RRF_K, k)


def _text_mean(t: np.ndarray, clip: np.ndarray, extra: Extra, alpha: float, k: int) -> QueryPlan:
    from pixseek.store.base import CLIP_VECTOR, Nearest

    return Nearest(_unit(t + clip.mean(axis=0)), CLIP_VECTOR)


def _weighted(t: np.ndarray, clip: np.ndarray, extra: Extra, alpha: float, k: int) -> QueryPlan:
    from pixseek.store.base import CLIP_VECTOR, Nearest

    return Nearest(_unit(alpha * t + (1.0 - alpha) * _unit(clip.mean(axis=0))), CLIP_VECTOR)


def _rrf(t: np.ndarray, clip: np.ndarray, extra: Extra, alpha: float, k: int) -> QueryPlan:
    from pixseek.store.base import CLIP_VECTOR, Nearest, RankFusion

    searches = [Nearest(t, CLIP_VECTOR), *(Nearest(row, CLIP_VECTOR) for row in clip)]
    for name in sorted(extra):
        searches += [Nearest(row, name) for row in extra[name]]
    return RankFusion(searches, None, RRF_K, k)


Extra = Mapping[str, np.ndarray]
# name -> plan builder(text unit vector, generated CLIP rows, other vectors' rows, alpha,
# candidates per prefetch). A new fusion is one function and one line here.
STRATEGIES: dict[str, Callable[[np.ndarray, np.ndarray, Extra, float, int], QueryPlan]] = {
    "text": _text,
    "generated": _generated,
    "text+mean": _text_mean,
    "weighted": _weighted,
    "rrf": _rrf,
}
FUSIONS = tuple(STRATEGIES)


def fuse(
    fusion: str,
    text: np.ndarray,
    generated: Mapping[str, np.ndarray],
    alpha: float = 0.5,
    candidates: int = 100,
) -> QueryPlan:
    """The query plan for `fusion`; `generated` maps vector name -> (n, dim) embeddings."""
    from pixseek.store.base import CLIP_VECTOR

    if fusion not in STRATEGIES:
        raise UserError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
    if not 0.0 <= alpha <= 1.0:
        raise UserError("alpha (the text's share) must be between 0 and 1")
    t = _unit(text)
    if fusion == "text":
        return _text(t, np.empty((0, t.size)), {}, alpha, candidates)
    if CLIP_VECTOR not in generated:
        raise UserError("this fusion needs the generated images' CLIP embeddings")
    clip = _rows(generated[CLIP_VECTOR])
    extra = {name: _rows(rows) for name, rows in generated.items() if name != CLIP_VECTOR}
    return STRATEGIES[fusion](t, clip, extra, alpha, candidates)
