"""Request and response models; the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Any, Literal

from pixseek.search.engine import MAX_LIMIT
from pixseek.search.fusion import DEFAULT_FUSION, FUSIONS
from pixseek.worker import spec as job_limits
from pydantic import BaseModel, ConfigDict, Field

MAX_UPLOADS = 8  # example images per search
MAX_OFFSET = 10_000
MAX_TERMS = 32
MAX_FILTERS = 16
MAX_TEXT = 10_000  # hard ceiling; PIXSEEK_API_MAX_QUERY_CHARS (default 1000) applies
MAX_FILTER_TEXT = 4000
FusionName = Literal[FUSIONS]  # type: ignore[valid-type]


class FeedbackIn(BaseModel):
    """Relevance feedback: results marked right or wrong in earlier rounds (the client keeps
    them: a session of rounds is the accumulated marks; the server is stateless)."""

    model_config = ConfigDict(extra="forbid")

    good: list[str] = Field([], max_length=MAX_TERMS, description="Point ids marked good.")
    bad: list[str] = Field([], max_length=MAX_TERMS, description="Point ids marked bad.")


class SearchBody(BaseModel):
    """One search. As JSON, or as the `query` part of a multipart upload with `images` parts."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"collection": "coco", "q": "a dog on a beach", "limit": 12},
                {"collection": "coco", "q": "2:dog -:grass", "where": ["width>=400"]},
            ]
        },
    )

    collection: str = Field(min_length=1, max_length=63, description="Collection to search.")
    q: str = Field(
        "",
        max_length=MAX_TEXT,
        description="Query text in rclip syntax: `red car`, `horse + stripes`, `2:dog -:grass`. "
        "Image paths are refused: upload example images instead.",
    )
    like: list[str] = Field(
        [],
        max_length=MAX_TERMS,
        description="Stored point ids as examples ('more like this'); prefix `-:` for less like "
        "this, `2:` for a weight. The examples are left out of the results.",
    )
    image_weights: list[float] = Field(
        [],
        max_length=MAX_UPLOADS,
        description="One signed weight per uploaded image, in upload order (default 1 each; "
        "-1 pushes results away from that image).",
    )
    modify: str | None = Field(
        None,
        max_length=MAX_TEXT,
        description="Composed query: change the one reference (uploaded image or `like` id) by "
        "this text, e.g. 'at night'.",
    )
    modify_weight: float = Field(0.5, gt=0.0, le=1.0, description="The text's share lambda.")
    where: list[str] = Field(
        [],
        max_length=MAX_FILTERS,
        description="Filters, ANDed: `label=dog`, `label in (dog, cat)`, `width>=640`, "
        "`taken>=2020-01-01`, `source~beach`, or raw Qdrant filter JSON as a string.",
    )
    filter: dict[str, Any] | None = Field(
        None, description="A raw Qdrant filter object, ANDed with `where`."
    )
    limit: int = Field(20, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="Drop results below this cosine score."
    )
    ensemble: bool = Field(True, description="Prompt-template ensembling for text terms.")
    collapse: Literal["near"] | None = Field(
        None, description="`near`: one hit per near-duplicate group, with `group_size`."
    )
    mode: Literal["auto", "dense", "keyword", "hybrid"] = Field(
        "auto",
        description="dense: CLIP; keyword: BM25 over OCR text, captions, labels, file names; "
        "hybrid: both fused in one query; auto: hybrid for plain text on collections with OCR "
        'text. `ocr:"..."` / `text:"..."` terms in `q` are keyword terms.',
    )
    hybrid_fusion: Literal["rrf", "dbsf"] = Field(
        "rrf", description="How hybrid mode fuses the rankings: reciprocal rank or DBSF."
    )
    feedback: FeedbackIn | None = Field(
        None, description="Relevance feedback: re-rank towards `good` and away from `bad` ids."
    )
    diversity: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Diverse results (Qdrant MMR): 0 = relevance order, 1 = most diverse.",
    )
    cutoff: str | None = Field(
        None,
        max_length=32,
        description="End the list per query: `gap:0.05` (below top score - 0.05) or `z:3` "
        "(3 standard deviations above the collection's background scores).",
    )


class HitOut(BaseModel):
    rank: int
    id: str
    score: float
    source: str | None = None
    payload: dict[str, Any]
    group_size: int | None = Field(
        None, description="With `collapse`: how many near duplicates this hit stands for."
    )
    image_url: str
    thumbnail_url: str


class SearchOut(BaseModel):
    collection: str
    query: str = Field(description="The query as the engine understood it.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last one.")
    hits: list[HitOut]
    ended_by: str | None = Field(
        None, description="Why the list ends before `limit`: the cutoff that ended it."
    )


class FacetsOut(BaseModel):
    collection: str
    matching: int = Field(description="Points the filter keeps (all points without one).")
    facets: dict[str, dict[str, int]] = Field(
        description="Counts per value: labels, formats, cameras, years."
    )
    facets_truncated: list[str] = Field([], description="Facets cut at their most frequent values.")


class BrowseOut(BaseModel):
    collection: str
    order: Literal["newest", "oldest"]
    limit: int
    offset: int
    next_offset: int | None
    hits: list[HitOut] = Field(description="Points in file-time order; `score` is 0.")


class PointOut(BaseModel):
    id: str
    payload: dict[str, Any] = Field(description="Every stored field (OCR text included).")
    image_url: str
    thumbnail_url: str
    duplicates: list[HitOut] = Field(
        description="The same bytes at other locations (score 1) and near duplicates."
    )


class CollectionOut(BaseModel):
    name: str
    points: int
    vectors: dict[str, int]
    models: dict[str, Any] = {}
    # Set (with points 0) for a collection that cannot be opened: damaged, or held elsewhere.
    error: str | None = None


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    auth: bool
    store: dict[str, Any]
    jobs: dict[str, Any]
    model: dict[str, Any]


class JobBody(BaseModel):
    """A generative search: generate reference images from the prompt, embed, search."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"prompt": "a red bicycle", "collection": "coco", "n_images": 2}]
        },
    )

    prompt: str = Field(min_length=1, max_length=job_limits.MAX_PROMPT_CHARS)
    collection: str = Field(min_length=1, max_length=63)
    n_images: int = Field(4, ge=0, le=job_limits.MAX_IMAGES, description="Images to generate.")
    fusion: FusionName = Field(DEFAULT_FUSION, description="How text and images are combined.")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="The text's share (weighted fusion).")
    seed: int = Field(0, ge=0, le=job_limits.MAX_SEED - job_limits.MAX_IMAGES)
    steps: int | None = Field(None, ge=1, le=job_limits.MAX_STEPS)
    guidance: float | None = Field(None, ge=0.0, le=50.0)
    width: int | None = Field(None, ge=job_limits.MIN_SIZE, le=job_limits.MAX_SIZE, multiple_of=8)
    height: int | None = Field(None, ge=job_limits.MIN_SIZE, le=job_limits.MAX_SIZE, multiple_of=8)
    negative_prompt: str = Field("", max_length=job_limits.MAX_PROMPT_CHARS)
    limit: int = Field(10, ge=1, le=job_limits.MAX_LIMIT)
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    where: list[str] = Field([], max_length=MAX_FILTERS)
    filter: dict[str, Any] | None = Field(None, description="A raw Qdrant filter object.")
    ensemble: bool = Field(True, description="Prompt-template ensembling of the text query.")
    diversity: float | None = Field(
        None, ge=0.0, le=1.0, description="Diverse results (Qdrant MMR over the fused hits)."
    )


class JobOut(BaseModel):
    job_id: str
    state: str = Field(
        description="QUEUED, STARTED, LOADING, GENERATING, EMBEDDING, SEARCHING, RETRY, "
        "then SUCCESS, FAILURE or REVOKED (cancelled)."
    )
    status: str = Field(description="One line for people, e.g. 'generating 2/4 (step 3/20)'.")
    finished: bool
    progress: dict[str, Any] = {}
    error: str | None = None
    result_url: str | None = None


class JobResultOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str
    state: str
    generated: list[dict[str, Any]]
    hits: list[HitOut]
