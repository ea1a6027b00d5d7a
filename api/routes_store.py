"""/_store/*: the server's store, for local pixseek processes (pixseek/store/remote.py) only.

Every call needs the data dir's secret (`X-Pixseek-Local`, read from `server.secret`, which only
the server's user can read): it proves the caller is a pixseek process of that user on this
machine, so it may call any public method of the server's store, as it would in process. The
secret is checked before a byte of the body is read, and bodies are unpickled only after it.
Not in the OpenAPI document: remote clients use /collections, /search and /ingest.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pixseek.api.app import is_local, services

from pixseek.errors import Forbidden, InputError, PixseekError
from pixseek.store.remote import LOCAL_ONLY, MEDIA_TYPE, encode_error, frame

router = APIRouter(prefix="/_store", include_in_schema=False)
SCROLL_PAGE = 1000


def _error(exc: PixseekError) -> JSONResponse:
    return JSONResponse(encode_error(exc), status_code=exc.http_status)


async def _decoded(request: Request) -> tuple[str, tuple, dict[str, Any]]:
    if not is_local(request):
        raise Forbidden(
            "the store routes are for pixseek commands on this machine (they send the data "
            "dir's secret); use /collections, /search and /ingest"
        )
    method, args, kwargs = pickle.loads(await request.body())
    if not isinstance(method, str) or method.startswith("_") or method in LOCAL_ONLY:
        raise InputError(f"{method!r} is not a store operation")
    return method, tuple(args), dict(kwargs)


def _bound(request: Request, method: str) -> Any:
    target = getattr(services(request).store, method, None)
    if not callable(target):
        raise InputError(f"the server's store has no operation {method!r}")
    return target


@router.post("/call")
async def call(request: Request) -> Response:
    from fastapi.concurrency import run_in_threadpool

    try:
        method, args, kwargs = await _decoded(request)
        result = await run_in_threadpool(_bound(request, method), *args, **kwargs)
    except PixseekError as exc:
        return _error(exc)
    body = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    return Response(body, media_type=MEDIA_TYPE)


@router.post("/scroll", response_model=None)
async def scroll(request: Request) -> StreamingResponse | JSONResponse:
    """Pages of points as length-prefixed pickles, streamed."""
    try:
        _, args, kwargs = await _decoded(request)
        points = _bound(request, "scroll")(*args, **kwargs)
        first = next(points, None)  # errors (unknown collection) surface before streaming
    except PixseekError as exc:
        return _error(exc)

    def pages() -> Iterator[bytes]:
        if first is None:
            return
        page = [first]
        for point in points:
            page.append(point)
            if len(page) >= SCROLL_PAGE:
                yield frame(page)
                page = []
        if page:
            yield frame(page)

    return StreamingResponse(pages(), media_type=MEDIA_TYPE)
