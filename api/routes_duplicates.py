"""GET /collections/{name}/duplicates: duplicate groups (exact, near, similar) for review.

The same finder as `pixseek duplicates` (search/duplicates.py). A whole-collection pass costs
one Qdrant query per point, so the last few reports are kept (keyed by their parameters and the
collection's point count) and paging through the groups does not search again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pixseek.api.app import services
from pixseek.api.routes_search import CollectionParam
from pixseek.search.duplicates import DuplicateOptions, DuplicateReport, find_duplicates
from pixseek.search.filters import compile_filters
from pydantic import BaseModel, Field

from pixseek.errors import CollectionNotFound
from pixseek.store.base import check_collection_name

router = APIRouter(tags=["collections"])
MAX_GROUPS = 200
_CACHE_SIZE = 4
_cache: OrderedDict[tuple, DuplicateReport] = OrderedDict()
_cache_lock = threading.Lock()


class DuplicatePointOut(BaseModel):
    id: str
    source: str | None = None
    root: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    taken: str | None = None
    distance: int | None = Field(None, description="Hash bits that differ from the keeper.")
    image_url: str
    thumbnail_url: str


class DuplicateGroupOut(BaseModel):
    tier: str
    size: int
    keep: str = Field(description="Id of the suggested keeper (listed first).")
    reason: str = Field(description="Why it is the keeper: largest, oldest, shortest path.")
    points: list[DuplicatePointOut]


class DuplicatesOut(BaseModel):
    collection: str
    tier: str
    groups_total: int
    duplicates: int = Field(description="Points that are not their group's keeper.")
    points: int
    unhashed: int = Field(description="Points without a perceptual hash (near tier).")
    seconds: float
    offset: int
    next_offset: int | None
    groups: list[DuplicateGroupOut]


def _report(request: Request, collection: str, options: DuplicateOptions, key: tuple) -> Any:
    store = services(request).store
    info = store.get_collection(collection)
    if info is None:
        raise CollectionNotFound(collection)
    key = (*key, info.points)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    report = find_duplicates(store, collection, options)
    with _cache_lock:
        _cache[key] = report
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return report


@router.get("/collections/{collection}/duplicates", response_model=DuplicatesOut)
async def duplicates(
    request: Request,
    collection: str = CollectionParam,
    tier: Literal["exact", "near", "similar"] = "near",
    threshold: float | None = Query(
        None, description="near: most differing hash bits (default 10); similar: least cosine."
    ),
    confirm: float | None = Query(
        None, ge=-1.0, le=1.0, description="near: least CLIP cosine per pair (default 0.80)."
    ),
    no_confirm: bool = Query(False, description="near: hash distance alone."),
    time_window: float | None = Query(None, ge=0, description="similar: seconds (EXIF)."),
    where: list[str] = Query([], max_length=16, description="Filters, as in /search."),
    limit: int = Query(50, ge=1, le=MAX_GROUPS, description="Groups per page."),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> DuplicatesOut:
    """Duplicate groups, largest first, each with its suggested keeper and the reason."""
    check_collection_name(collection)
    options = DuplicateOptions(tier=tier, filter=compile_filters(where, "where"))
    options.with_threshold(threshold)
    options.confirm = None if no_confirm else (confirm if confirm is not None else options.confirm)
    options.time_window = time_window
    options.validated()
    key = (
        collection,
        tier,
        options.max_distance,
        options.similarity,
        options.confirm,
        time_window,
        tuple(where),
    )
    report = await run_in_threadpool(_report, request, collection, options, key)
    base = f"{request.scope.get('root_path', '')}/images/{collection}"
    page = report.groups[offset : offset + limit]
    summary = report.summary()
    return DuplicatesOut(
        collection=collection,
        tier=tier,
        groups_total=summary["groups"],
        duplicates=summary["duplicates"],
        points=summary["points"],
        unhashed=summary["unhashed"],
        seconds=summary["seconds"],
        offset=offset,
        next_offset=offset + limit if offset + limit < len(report.groups) else None,
        groups=[
            DuplicateGroupOut(
                tier=g.tier,
                size=len(g.points),
                keep=g.keep,
                reason=g.reason,
                points=[
                    DuplicatePointOut(
                        **{k: p.get(k) for k in DuplicatePointOut.model_fields if k in p},
                        image_url=f"{base}/{p['id']}",
                        thumbnail_url=f"{base}/{p['id']}/thumbnail",
                    )
                    for p in g.points
                ],
            )
            for g in page
        ],
    )
