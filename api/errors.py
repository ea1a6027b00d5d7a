"""Every error is JSON `{"detail": "one line"}` with a status code that says whose fault it is."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from pixseek.errors import PixseekError

log = logging.getLogger("pixseek.api")


class ErrorOut(BaseModel):
    detail: str


class ApiError(Exception):
    """An HTTP error with a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class NotFound(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


def validation_message(errors: list[Any]) -> str:
    """pydantic's first error as one line: `body.limit: Input should be less than ...`."""
    if not errors:
        return "invalid request"
    first = errors[0]
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "__root__")
    message = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{location}: {message}{more}" if location else f"{message}{more}"


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


# Documented on every route, so clients (and the OpenAPI fuzzer) know the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed request (multipart body, Content-Length)"},
    401: {
        "model": ErrorOut,
        "description": "API key missing or wrong (when PIXSEEK_API_KEY is set)",
    },
    404: {"model": ErrorOut, "description": "Not found"},
    408: {"model": ErrorOut, "description": "The request body stalled or arrived too slowly"},
    413: {"model": ErrorOut, "description": "Request too large: body, JSON shape, filter, pixels"},
    422: {"model": ErrorOut, "description": "Invalid input; the message says what to fix"},
    429: {"model": ErrorOut, "description": "Over PIXSEEK_API_RATE_LIMIT (when set)"},
    503: {"model": ErrorOut, "description": "Store or broker unavailable"},
}


def _public(request: Request, message: str) -> str:
    """The line without absolute server paths (unless PIXSEEK_API_SHOW_PATHS is on)."""
    from pixseek.api.paths import redact

    svc = getattr(request.app.state, "pixseek", None)
    return redact(message, svc.settings) if svc is not None else message


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, _public(request, exc.message), exc.headers)

    @app.exception_handler(PixseekError)
    async def pixseek_error(request: Request, exc: PixseekError) -> JSONResponse:
        # The error class carries its status; the message may have an HTTP wording.
        return error_response(exc.http_status, _public(request, exc.api_message))

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_message(list(exc.errors())))

    @app.exception_handler(ValidationError)
    async def model_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return error_response(422, validation_message(list(exc.errors())))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
