"""Bounded work per request, enforced before any route runs (ASGI middleware).

- Every request body must arrive within PIXSEEK_API_BODY_TIMEOUT_S, with no silence longer than
  PIXSEEK_API_READ_TIMEOUT_S: a stalled or trickling upload gets 408 and frees its connection.
- A JSON body (the only kind a route parses in full) is read here, at most
  PIXSEEK_API_MAX_JSON_BYTES, and its nesting depth and member count are checked by a scan that
  costs about as much as reading it (pixseek/jsonscan.py), in a worker thread; only then does the
  route's parser see it. A hostile body is refused in milliseconds and never reaches a parser
  that would recurse or allocate per member.

The body size limit for every request (PIXSEEK_API_MAX_UPLOAD_BYTES) stays with app.py's
LimitsAndHeaders, which runs before this.
"""

from __future__ import annotations

import time

import anyio
from pixseek.api import errors
from pixseek.search.filter_bounds import FilterLimits
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixseek.config import Settings
from pixseek.errors import PixseekError
from pixseek.jsonscan import check_json_shape


class BodyTimeout(HTTPException):
    def __init__(self, message: str) -> None:
        super().__init__(408, message)


def _is_json(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    # /search reads a body without a content type as JSON, so it is bounded the same way.
    return content_type in (b"", b"application/json") or content_type.endswith(b"+json")


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # An archive for POST /ingest/upload may take long to arrive: only silence times it out.
        whole = not scope["path"].endswith("/ingest/upload")
        timed = _TimedReceive(receive, self.settings, whole)
        if not _is_json(scope):
            await self.app(scope, timed, send)  # multipart: parsed by the route, in chunks
            return
        try:
            body = await self._json_body(scope, timed)
        except (PixseekError, HTTPException) as exc:
            status = getattr(exc, "http_status", None) or getattr(exc, "status_code", 400)
            detail = exc.message if isinstance(exc, PixseekError) else str(exc.detail)
            await errors.error_response(status, detail)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices, untimed

        await self.app(scope, replay, send)

    async def _json_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.api_max_json_bytes
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _json_too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise HTTPException(400, "the client went away before the body arrived")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _json_too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            await anyio.to_thread.run_sync(
                check_json_shape,
                body,
                self.settings.api_max_json_depth,
                self.settings.api_max_json_members,
                "the JSON body",
            )
        return body


def _json_too_large(limit: int) -> PixseekError:
    from pixseek.errors import TooLarge

    return TooLarge(
        f"the JSON body is larger than {limit} bytes (PIXSEEK_API_MAX_JSON_BYTES); send images "
        "as multipart uploads"
    )


class _TimedReceive:
    """`receive` with a deadline for the whole body and a limit on silence between chunks."""

    def __init__(self, receive: Receive, settings: Settings, whole: bool = True) -> None:
        self.receive = receive
        self.total = settings.api_body_timeout_s if whole else float("inf")
        self.idle = settings.api_read_timeout_s
        self.deadline = time.monotonic() + self.total
        self.done = False

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()
        left = self.deadline - time.monotonic()
        wait = min(self.idle, left)
        message: Message | None = None
        if wait > 0:
            with anyio.move_on_after(wait):
                message = await self.receive()
        if message is None:
            if left <= self.idle:
                raise BodyTimeout(
                    f"the request body did not arrive within {self.total:g} s "
                    "(PIXSEEK_API_BODY_TIMEOUT_S)"
                )
            raise BodyTimeout(
                f"the request body stalled for {self.idle:g} s (PIXSEEK_API_READ_TIMEOUT_S)"
            )
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message


def filter_limits(settings: Settings) -> FilterLimits:
    """The filter bounds of API requests (PIXSEEK_API_MAX_FILTER_DEPTH / _CONDITIONS)."""
    return FilterLimits(
        depth=settings.api_max_filter_depth, conditions=settings.api_max_filter_conditions
    )
