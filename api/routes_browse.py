"""Looking at a collection without a query: facets, browse pages, and one point's detail."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pixseek.api.app import services
from pixseek.api.limits import filter_limits
from pixseek.api.paths import public_payload
from pixseek.api.routes_search import CollectionParam, PointParam, hit_out
from pixseek.api.schemas import MAX_OFFSET, BrowseOut, FacetsOut, PointOut
from pixseek.search.facets import collection_facets
from pixseek.search.filters import compile_filters
from pixseek.search.related import related

from pixseek.errors import CollectionNotFound, InputError, NotFound
from pixseek.store.base import Browse, CollectionInfo, Hit, check_collection_name, is_point_id

router = APIRouter(tags=["collections"])
WhereParam = Query([], max_length=16, description="Filters, ANDed (the `where` of /search).")


def _info(request: Request, collection: str) -> CollectionInfo:
    info = services(request).store.get_collection(check_collection_name(collection))
    if info is None:
        raise CollectionNotFound(collection)
    return info


def _filter(request: Request, where: list[str]) -> Any:
    return compile_filters(where, "where", filter_limits(services(request).settings))


@router.get("/collections/{collection}/facets", response_model=FacetsOut)
async def facets(
    request: Request, collection: str = CollectionParam, where: list[str] = WhereParam
) -> FacetsOut:
    """Counts per label, format, camera and year, for the collection or the filter's points."""

    def run() -> FacetsOut:
        info = _info(request, collection)
        flt = _filter(request, where)
        store = services(request).store
        counted = collection_facets(store, info.name, flt)
        matching = store.count(info.name, flt) if flt is not None else info.points
        return FacetsOut(
            collection=info.name,
            matching=matching,
            facets=counted.counts,
            facets_truncated=counted.truncated,
        )

    return await run_in_threadpool(run)


@router.get("/collections/{collection}/browse", response_model=BrowseOut)
async def browse(
    request: Request,
    collection: str = CollectionParam,
    where: list[str] = WhereParam,
    order: Literal["newest", "oldest"] = Query("newest", description="By file time."),
    limit: int = Query(48, ge=1, le=200),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> BrowseOut:
    """A page of the collection before any query: newest (file time) first, or oldest."""

    def run() -> BrowseOut:
        info = _info(request, collection)
        svc = services(request)
        page = Browse(limit, offset, _filter(request, where), newest_first=order == "newest")
        points = svc.store.browse(info.name, page)
        base = request.scope.get("root_path", "")
        hits = [
            hit_out(
                base,
                info.name,
                offset + i + 1,
                Hit(id=p.id, score=0.0, payload=p.payload),
                svc.settings.api_show_paths,
            )
            for i, p in enumerate(points)
        ]
        more = len(points) == limit and offset + limit <= MAX_OFFSET
        return BrowseOut(
            collection=info.name,
            order=order,
            limit=limit,
            offset=offset,
            next_offset=offset + limit if more else None,
            hits=hits,
        )

    return await run_in_threadpool(run)


@router.get("/collections/{collection}/points/{point_id}", response_model=PointOut)
async def point(
    request: Request, collection: str = CollectionParam, point_id: str = PointParam
) -> PointOut:
    """One image: every payload field, and its copies (same bytes elsewhere, near duplicates)."""

    def run() -> PointOut:
        info = _info(request, collection)
        if not is_point_id(point_id):
            raise InputError(f"{point_id[:80]!r} is not a point id; ids are UUIDs")
        svc = services(request)
        found = svc.store.retrieve(info.name, [point_id])
        if not found:
            raise NotFound(f"point {point_id} is not in collection {info.name!r}")
        base = request.scope.get("root_path", "")
        show = svc.settings.api_show_paths
        copies = related(svc.store, info, found[0])
        url = f"{base}/images/{info.name}/{point_id}"
        return PointOut(
            id=point_id,
            payload=public_payload(found[0].payload, show),
            image_url=url,
            thumbnail_url=f"{url}/thumbnail",
            duplicates=[hit_out(base, info.name, i + 1, h, show) for i, h in enumerate(copies)],
        )

    return await run_in_threadpool(run)
