"""`create_app(settings)`: the ASGI app behind `pixseek serve`.

One process serves the API and the web page. It opens the store once (the embedded store can be
open in one process only; within it every request shares the open shards), loads the CLIP model on
the first query that needs it and keeps it, and runs generative jobs on Celery workers or, without
a broker, in its own threads (api/jobs.py).

Auth: when PIXSEEK_API_KEY is set, every API route but /health needs the key, as `X-API-Key: KEY`
or `Authorization: Bearer KEY`. The web page's own files (/, /static/*) hold no data and are served
without it, so a browser can load the page and then send the key with each API call.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pixseek.api import errors
from pixseek.api.errors import ApiError
from pixseek.api.images import Images
from pixseek.api.indexer import BackgroundIndexer, IndexedStore
from pixseek.api.ingest_jobs import IngestJobs
from pixseek.api.jobs import JobBackend, job_backend
from pixseek.api.limits import RequestGuard
from pixseek.api.ratelimit import RateLimit
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixseek.config import Settings, load_settings
from pixseek.serverfile import SECRET_HEADER
from pixseek.store import VectorStore, open_store

STATIC = Path(__file__).resolve().parent / "static"
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
log = logging.getLogger("pixseek.api")


@dataclass
class Services:
    settings: Settings
    store: VectorStore
    images: Images
    jobs: JobBackend
    ingest: IngestJobs | None = None
    indexer: BackgroundIndexer | None = None


def services(request: Request) -> Services:
    return request.app.state.pixseek


_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="PIXSEEK_API_KEY")
_bearer = HTTPBearer(auto_error=False, description="PIXSEEK_API_KEY as a bearer token")


def is_local(request: Request) -> bool:
    """The request carries the data dir's secret (pixseek/serverfile.py): a pixseek command run
    by the server's user on this machine."""
    expected = getattr(request.app.state, "local_secret", None)
    given = request.headers.get(SECRET_HEADER, "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def require_key(
    request: Request,
    key: str | None = Depends(_key_header),
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    expected = services(request).settings.api_key
    if not expected or is_local(request):  # local pixseek commands send the data dir's secret
        return
    given = key or (bearer.credentials if bearer else None)
    if given is None:
        raise ApiError(
            401,
            "this server needs an API key: send it as `X-API-Key: KEY` or "
            "`Authorization: Bearer KEY`",
            {"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise ApiError(401, "wrong API key", {"WWW-Authenticate": "Bearer"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is larger than {limit} bytes (PIXSEEK_API_MAX_UPLOAD_BYTES)"
        )


class LimitsAndHeaders:
    """Refuses request bodies above the limit (by Content-Length, or while streaming) with 413,
    and adds `X-Content-Type-Options: nosniff` to every response."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit or limit  # POST /ingest/upload (archives)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        limit = self.upload_limit if scope["path"].endswith("/ingest/upload") else self.limit
        if length is not None and (not length.isdigit() or int(length) > limit):
            status = 413 if length.isdigit() else 400
            detail = BodyTooLarge(limit).detail if status == 413 else "bad Content-Length"
            await errors.error_response(status, detail)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await self.app(scope, limited, with_headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    from importlib.metadata import version

    from pixseek.api import (
        routes_browse,
        routes_duplicates,
        routes_ingest,
        routes_jobs,
        routes_search,
        routes_store,
    )

    settings = settings or load_settings()
    # Writes go through the background indexer's guard; index builds run off the process.
    indexer = BackgroundIndexer(open_store(settings), settings.data_dir / "server")
    store = IndexedStore(indexer.store, indexer)
    jobs = job_backend(settings)
    ingest = IngestJobs(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        indexer.start()
        yield
        ingest.close()
        indexer.stop()
        jobs.close()
        if app.state.claim is not None:  # uvicorn may end the process right after this
            app.state.claim.release()

    app = FastAPI(
        lifespan=lifespan,
        title="pixseek",
        version=version("pixseek"),
        summary="Image search over OpenCLIP embeddings in Qdrant: text, example images, "
        "filters, and generative (text -> image -> search) jobs.",
        docs_url=None,  # Swagger UI / ReDoc load their scripts from a CDN: not offline-safe
        redoc_url=None,
        openapi_url=None,  # served by routes_search.router, behind the API key
        responses=dict(errors.ERROR_RESPONSES),
    )
    app.state.pixseek = Services(settings, store, Images(store), jobs, ingest, indexer)
    # Set by `pixseek serve` once it has claimed the data dir (pixseek/serverfile.py).
    app.state.local_secret = None
    app.state.claim = None
    errors.install(app)
    app.add_middleware(RequestGuard, settings=settings)  # JSON shape, body timeouts
    app.add_middleware(
        LimitsAndHeaders,
        limit=settings.api_max_upload_bytes,
        upload_limit=settings.ingest_max_upload_bytes,
    )
    if settings.api_rate_limit > 0:
        app.add_middleware(RateLimit, per_minute=settings.api_rate_limit, api_key=settings.api_key)
    if settings.api_cors_origins:  # outermost: preflights are answered before the key check
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api_cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
            max_age=600,
        )

    app.include_router(routes_search.public)
    secured = [Depends(require_key)]
    app.include_router(routes_search.router, dependencies=secured)
    app.include_router(routes_jobs.router, dependencies=secured)
    app.include_router(routes_duplicates.router, dependencies=secured)
    app.include_router(routes_browse.router, dependencies=secured)
    app.include_router(routes_ingest.router, dependencies=secured)
    app.include_router(routes_store.router)  # its own check: the data dir's secret
    routes_search.document_search_body(app)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app
