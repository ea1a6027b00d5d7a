"""/_store/*: the server's store, for local pixseek processes (RemoteStore) only.

Every call needs the data dir's secret (`X-Pixseek-Local`, read from `server.secret`, which only
the server's user can read): it proves the caller runs on this machine as that user, so it gets
the store itself, the same operations an in-process command would run. Not in the OpenAPI
document: remote clients use /collections, /search and /ingest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pixseek.api.app import is_local, services

from pixseek.errors import Forbidden, PixseekError
from pixseek.store import wire
from pixseek.store.options import StorageOptions

router = APIRouter(prefix="/_store", include_in_schema=False)
Json = Body(default_factory=dict)


def check_local(request: Request) -> None:
    if not is_local(request):
        raise Forbidden(
            "the store routes are for pixseek commands on this machine (they send the data "
            "dir's secret); use /collections, /search and /ingest"
        )


def _answer(request: Request, call: Callable[[], Any]) -> JSONResponse:
    try:
        check_local(request)
        return JSONResponse(call())
    except PixseekError as exc:
        return JSONResponse(wire.error_out(exc), status_code=exc.http_status)


@router.post("/list_collections")
def list_collections(request: Request) -> JSONResponse:
    store = services(request).store
    return _answer(request, lambda: [wire.info_out(i) for i in store.list_collections()])


@router.post("/get_collection")
def get_collection(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    def call() -> Any:
        info = services(request).store.get_collection(body["name"])
        return None if info is None else wire.info_out(info)

    return _answer(request, call)


@router.post("/create_collection")
def create_collection(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    def call() -> Any:
        storage = StorageOptions.from_dict(body.get("storage"))
        info = services(request).store.create_collection(
            body["name"], body["vectors"], body["metadata"], storage
        )
        return wire.info_out(info)

    return _answer(request, call)


@router.post("/drop_collection")
def drop_collection(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    return _answer(request, lambda: services(request).store.drop_collection(body["name"]))


@router.post("/upsert")
def upsert(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    def call() -> None:
        points = [wire.point_in(p) for p in body["points"]]
        services(request).store.upsert(body["name"], points)

    return _answer(request, call)


@router.post("/set_payload")
def set_payload(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    store = services(request).store
    return _answer(
        request, lambda: store.set_payload(body["name"], body["point_id"], body["payload"])
    )


@router.post("/delete")
def delete(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    return _answer(request, lambda: services(request).store.delete(body["name"], body["ids"]))


@router.post("/retrieve")
def retrieve(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    def call() -> Any:
        found = services(request).store.retrieve(
            body["name"], body["ids"], bool(body.get("with_vectors"))
        )
        return [wire.stored_out(p) for p in found]

    return _answer(request, call)


@router.post("/count")
def count(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    store = services(request).store
    return _answer(request, lambda: store.count(body["name"], wire.filter_in(body.get("filter"))))


@router.post("/search")
def search(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    def call() -> Any:
        hits = services(request).store.search(body["name"], wire.request_in(body["request"]))
        return [{"id": h.id, "score": h.score, "payload": h.payload} for h in hits]

    return _answer(request, call)


@router.post("/optimize")
def optimize(request: Request, body: dict[str, Any] = Json) -> JSONResponse:
    """Queue a background index build and report where the index stands now."""
    return _answer(request, lambda: services(request).indexer.request(body["name"]).__dict__)


@router.post("/scroll", response_model=None)
def scroll(request: Request, body: dict[str, Any] = Json) -> StreamingResponse | JSONResponse:
    """Every point as one JSON line, streamed: a million points never sit in memory at once."""
    try:
        check_local(request)
        store = services(request).store
        points = store.scroll(
            body["name"],
            body.get("fields"),
            wire.filter_in(body.get("filter")),
            int(body.get("page_size") or 1000),
        )
        first = next(points, None)  # errors (unknown collection) surface before streaming
    except PixseekError as exc:
        return JSONResponse(wire.error_out(exc), status_code=exc.http_status)

    def lines() -> Iterator[bytes]:
        if first is None:
            return
        yield (json.dumps(wire.stored_out(first)) + "\n").encode()
        for point in points:
            yield (json.dumps(wire.stored_out(point)) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")
