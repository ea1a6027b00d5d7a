"""Every error is JSON `{"detail": "one line"}` with a status code that says whose fault it is."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from pixseek.errors import CollectionNotFound, ServiceUnavailable, UserError

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


# The shared search code speaks in CLI options; over HTTP the same advice names the API's fields.
_API_WORDS = (
    ("--image PATH", "an uploaded image"),
    ("--like POINT_ID", "a `like` point id"),
    ("--modify-weight", "modify_weight"),
    ("--modify 'at night'", "modify: 'at night'"),
    ("--modify", "modify"),
    ("`pixseek search --json`", "search results"),
)


def api_message(exc: UserError) -> str:
    """The error's one line, worded for HTTP clients."""
    if isinstance(exc, CollectionNotFound):
        return f"collection {exc.name!r} does not exist; GET /collections lists them"
    message = str(exc)
    for cli, api in _API_WORDS:
        message = message.replace(cli, api)
    return message


def status_of(exc: UserError) -> int:
    """Bad input is 422, a missing collection 404, Qdrant/Redis down or the store held 503."""
    if isinstance(exc, CollectionNotFound):
        return 404
    if isinstance(exc, ServiceUnavailable):
        return 503
    return getattr(exc, "http_status", 422)


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
    413: {"model": ErrorOut, "description": "Request body too large"},
    422: {"model": ErrorOut, "description": "Invalid input; the message says what to fix"},
    503: {"model": ErrorOut, "description": "Store or broker unavailable"},
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return error_response(status_of(exc), api_message(exc))

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
