"""/health, /openapi.json, /collections, /search and the image routes."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pixseek.api.app import Services, services
from pixseek.api.errors import ApiError, ErrorOut
from pixseek.api.images import ImageBytes
from pixseek.api.limits import filter_limits
from pixseek.api.paths import public_payload, redact
from pixseek.api.schemas import MAX_OFFSET, CollectionOut, HealthOut, HitOut, SearchBody, SearchOut
from pixseek.api.uploads import SearchInput, read_search
from pixseek.search.cutoff import parse_cutoff
from pixseek.search.engine import check_model, search_page
from pixseek.search.filters import check_conditions, compile_filters, parse_where
from pixseek.search.query import Composed, QuerySpec, build_query
from pixseek.search.render import hit_record
from pixseek.search.text_encoder import QueryEncoder, query_encoder
from qdrant_client import models

from pixseek.errors import CollectionNotFound, Misconfigured, first_line
from pixseek.store.base import CLIP_VECTOR, Hit, check_collection_name

public = APIRouter(tags=["service"])
router = APIRouter()
IMAGE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image",
        "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in ("image/*",)},
    },
    304: {"description": "Not modified (If-None-Match)"},
}
CollectionParam = Path(max_length=200, description="Collection name")
PointParam = Path(
    max_length=200, description="Point id (a UUID)", json_schema_extra={"format": "uuid"}
)


@public.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(request: Request) -> JSONResponse:
    """Store, job broker and model status; needs no API key. 503 when the store or broker fails."""
    from importlib.metadata import version

    from pixseek.models.t2i_backends import loaded_models

    svc = services(request)
    settings = svc.settings
    store: dict[str, Any] = {"backend": "qdrant" if settings.qdrant_url else "embedded"}
    try:
        store.update(ok=True, collections=len(svc.store.list_collections()))
    except Exception as exc:  # any failure here is what /health is for
        store.update(ok=False, detail=redact(first_line(exc), settings))
    jobs = svc.jobs.health()
    if isinstance(jobs.get("detail"), str):
        jobs["detail"] = redact(jobs["detail"], settings)
    if jobs["mode"] == "broker" and not settings.qdrant_url:
        jobs["warning"] = (
            "jobs run on workers but the store is embedded (one process only): "
            "use a Qdrant server (PIXSEEK_QDRANT_URL) with workers"
        )
    encoder = query_encoder(settings)
    model = {
        "clip": settings.clip_model,
        "clip_loaded": getattr(encoder, "_model", None) is not None,
        "t2i": settings.t2i_model,
        "t2i_loaded": settings.t2i_model in loaded_models(),
    }
    ok = store["ok"] and jobs["ok"]
    body = HealthOut(
        status="ok" if ok else "degraded",
        version=version("pixseek"),
        auth=bool(settings.api_key),
        store=store,
        jobs=jobs,
        model=model,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


def _collection_out(info: Any) -> CollectionOut:
    models = (info.metadata or {}).get("models", {})
    return CollectionOut(
        name=info.name,
        points=info.points,
        vectors=info.vectors,
        models=models,
        error=getattr(info, "error", None),
    )


@router.get("/collections", response_model=list[CollectionOut], tags=["collections"])
def collections(request: Request) -> list[CollectionOut]:
    """Every collection: name, point count, vector sizes, the models that built it."""
    return [_collection_out(info) for info in services(request).store.list_collections()]


@router.get("/collections/{collection}", response_model=CollectionOut, tags=["collections"])
def collection(request: Request, collection: str = CollectionParam) -> CollectionOut:
    info = services(request).store.get_collection(check_collection_name(collection))
    if info is None:
        raise CollectionNotFound(collection)
    return _collection_out(info)


def _search_request_body() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/SearchBody"}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": ref},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["query"],
                    "additionalProperties": False,
                    "properties": {
                        "query": ref,
                        "images": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "maxItems": 8,
                        },
                    },
                },
                "encoding": {"query": {"contentType": "application/json"}},
            },
        },
    }


@router.post(
    "/search",
    response_model=SearchOut,
    tags=["search"],
    openapi_extra={"requestBody": _search_request_body()},
    responses={415: {"model": ErrorOut, "description": "Neither JSON nor multipart"}},
)
async def search(request: Request) -> SearchOut:
    """Search by text, uploaded example images, stored points, a composed query, and filters.

    Send the search as JSON (`SearchBody`), or as multipart/form-data with the same JSON in a
    `query` part and up to 8 example images as `images` parts (weights: `image_weights`).
    Scores are cosine similarities; results come with image and thumbnail URLs.
    """
    svc = services(request)
    given = await read_search(request, svc.settings)
    try:
        return await run_in_threadpool(_search, svc, given, request.scope.get("root_path", ""))
    finally:
        given.cleanup()


def _needs_model(spec: QuerySpec) -> bool:
    return any(
        isinstance(t, Composed) or t.kind not in ("point", "ocr", "keyword") for t in spec.terms
    )


def ensure_model(encoder: QueryEncoder) -> None:
    """Load the CLIP model now, so a model that cannot load is a 503, not bad input."""
    try:
        encoder.model  # noqa: B018 - loads on first use
    except Misconfigured as exc:
        raise Misconfigured(f"the CLIP model cannot be loaded: {exc.message}") from None


def _search(svc: Services, given: SearchInput, base: str) -> SearchOut:
    body = given.body
    check_collection_name(body.collection)
    given.check_text(svc.settings)
    spec = build_query(given.query_input())
    given.check_size(spec, svc.settings)
    given.check_terms(spec)
    limits = filter_limits(svc.settings)
    flt = compile_filters(body.where, "where", limits)
    if body.filter is not None:
        raw = parse_where(json.dumps(body.filter), "filter", limits)
        flt = raw if flt is None else models.Filter(must=[flt, raw])
        check_conditions(flt, limits, "where and filter")
    info = svc.store.get_collection(body.collection)
    if info is None:
        raise CollectionNotFound(body.collection)
    if CLIP_VECTOR not in info.vectors:
        raise ApiError(422, f"collection {body.collection!r} has no {CLIP_VECTOR!r} vectors")
    encoder = query_encoder(svc.settings)
    if _needs_model(spec):
        ensure_model(encoder)
        check_model(info, encoder)  # Misconfigured (503): the server's setup, not the request
    page = search_page(
        svc.store,
        encoder,
        body.collection,
        spec,
        filter=flt,
        limit=body.limit,
        offset=body.offset,
        threshold=body.threshold,
        max_pixels=svc.settings.max_image_pixels,
        collapse=body.collapse,
        mode=body.mode,
        fusion=body.hybrid_fusion,
        diversity=body.diversity,
        cutoff=parse_cutoff(body.cutoff) if body.cutoff is not None else None,
    )
    hits = page.hits
    more = not page.ended_by and len(hits) == body.limit and body.offset + body.limit <= MAX_OFFSET
    return SearchOut(
        collection=body.collection,
        query=given.describe(spec),
        limit=body.limit,
        offset=body.offset,
        next_offset=body.offset + len(hits) if more else None,
        hits=[
            hit_out(base, body.collection, body.offset + i + 1, h, svc.settings.api_show_paths)
            for i, h in enumerate(hits)
        ],
        ended_by=page.ended_by,
    )


def hit_out(
    base: str, collection: str, rank: int, hit: Hit | dict[str, Any], show_paths: bool = False
) -> HitOut:
    """A hit as clients see it: `payload.root` is the root's name unless show_paths."""
    record = hit_record(rank, hit) if isinstance(hit, Hit) else hit  # a job result's hit
    url = f"{base}/images/{collection}/{record['id']}"
    return HitOut(
        rank=record.get("rank", rank),
        id=record["id"],
        score=record["score"],
        source=record.get("source"),
        payload=public_payload(record.get("payload") or {}, show_paths),
        group_size=record.get("group_size"),
        image_url=url,
        thumbnail_url=f"{url}/thumbnail",
    )


def document_search_body(app: FastAPI) -> None:
    """Put SearchBody (read by hand from JSON or multipart) into the OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            body = SearchBody.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components["SearchBody"] = body
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _image_response(request: Request, image: ImageBytes) -> Response:
    etag = f'"{image.etag}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, max-age=86400",
        "Content-Disposition": f'inline; filename="{image.filename}"',
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(image.data, media_type=image.media_type, headers=headers)


@router.get(
    "/images/{collection}/{point_id}",
    response_class=Response,
    responses=IMAGE_RESPONSE,
    tags=["images"],
)
def image(
    request: Request, collection: str = CollectionParam, point_id: str = PointParam
) -> Response:
    """The original image of a stored point, read from where it was ingested."""
    svc = services(request)
    return _image_response(request, svc.images.original(collection, point_id))


@router.get(
    "/images/{collection}/{point_id}/thumbnail",
    response_class=Response,
    responses=IMAGE_RESPONSE,
    tags=["images"],
)
def thumbnail(
    request: Request,
    collection: str = CollectionParam,
    point_id: str = PointParam,
    size: int = Query(256, ge=32, le=1024, description="Longer side in pixels"),
) -> Response:
    """A JPEG thumbnail of a stored point (cached in memory)."""
    svc = services(request)
    return _image_response(request, svc.images.thumbnail(collection, point_id, size))
