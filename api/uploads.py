"""A search request as the engine takes it: the body parsed, uploads checked and kept in a temp dir.

`POST /search` takes JSON, or multipart/form-data with a `query` part (the same JSON) and up to
MAX_UPLOADS `images` parts. Each upload is decoded once here (size, pixel limit, format) so a bad
one is refused with its own file name, then written to a private temp dir; the engine reads it
back from there as an image term. Image terms are accepted only for those temp files: a query word
that looks like a path (`./x.jpg`, `/etc/passwd.png`) is refused, so no path from the request
reaches the filesystem.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pixseek.api.errors import ApiError, validation_message
from pixseek.api.schemas import MAX_UPLOADS, SearchBody
from pixseek.search.query import Composed, QueryInput, QuerySpec, Term
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from pixseek.config import Settings
from pixseek.errors import InputError, TooLarge
from pixseek.jsonscan import check_json_shape

MAX_FIELD_BYTES = 256 * 1024


@dataclass
class Upload:
    name: str  # as the client sent it; shown in messages and the query description only
    path: Path  # our temp file


@dataclass
class SearchInput:
    body: SearchBody
    uploads: list[Upload] = field(default_factory=list)
    tmpdir: Path | None = None

    def query_input(self) -> QueryInput:
        weights = self.body.image_weights or [1.0] * len(self.uploads)
        if len(weights) != len(self.uploads):
            raise ApiError(
                422,
                f"image_weights has {len(weights)} value(s) for {len(self.uploads)} uploaded "
                "image(s); give one weight per image",
            )
        images = []
        for weight, upload in zip(weights, self.uploads, strict=True):
            if weight == 0 or abs(weight) < 1e-3 or abs(weight) > 1e3:
                raise ApiError(422, "image weights must be between 0.001 and 1000 (or negative)")
            sign = "-" if weight < 0 else ""
            images.append(f"{sign}{abs(weight):.6f}:{upload.path}")
        return QueryInput(
            words=self.body.q.split(),
            images=images,
            likes=self.body.like,
            modify=self.body.modify,
            modify_weight=self.body.modify_weight,
            ensemble=self.body.ensemble,
            good=self.body.feedback.good if self.body.feedback else (),
            bad=self.body.feedback.bad if self.body.feedback else (),
        )

    def check_text(self, settings: Settings) -> None:
        """Query length, before the query is parsed (PIXSEEK_API_MAX_QUERY_CHARS)."""
        limit = settings.api_max_query_chars
        for name, text in (("q", self.body.q), ("modify", self.body.modify or "")):
            if len(text) > limit:
                raise TooLarge(
                    f"`{name}` is {len(text)} characters; the limit is {limit} "
                    "(PIXSEEK_API_MAX_QUERY_CHARS)"
                )

    def check_size(self, spec: QuerySpec, settings: Settings) -> None:
        """Number of terms (text, images, points), before any is embedded."""
        count = sum(2 if isinstance(term, Composed) else 1 for term in spec.terms)
        count += len(spec.good) + len(spec.bad)
        if count > settings.api_max_query_terms:
            raise TooLarge(
                f"the query has {count} terms (text, images and points); the limit is "
                f"{settings.api_max_query_terms} (PIXSEEK_API_MAX_QUERY_TERMS)"
            )

    def check_terms(self, spec: QuerySpec) -> None:
        """Refuse image terms that are not our uploads (paths typed into the query)."""
        ours = {str(upload.path) for upload in self.uploads}
        for term in spec.terms:
            ref = term.reference if isinstance(term, Composed) else term
            if isinstance(ref, Term) and ref.kind == "image" and ref.value not in ours:
                raise ApiError(
                    422,
                    f"query term {ref.value[:80]!r} looks like an image path; the API does not "
                    "read server files: upload the image as an `images` part instead",
                )

    def describe(self, spec: QuerySpec) -> str:
        text = spec.describe()
        for upload in self.uploads:
            text = text.replace(f"image:{upload.path}", f"upload:{upload.name}")
        return text

    def cleanup(self) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def _body(raw: bytes | str) -> SearchBody:
    try:
        return SearchBody.model_validate_json(raw)
    except ValidationError as exc:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            raise ApiError(422, f"the body is not valid JSON: {errors[0].get('msg')}") from None
        raise ApiError(422, validation_message(errors)) from None


async def read_search(request: Request, settings: Settings) -> SearchInput:
    """Parse JSON or multipart; the caller must call `cleanup()` when done.

    Parsing and decoding run in worker threads (decoding with a deadline, at most DECODERS at
    once), so no request holds the event loop; the JSON body's shape was bounded by RequestGuard.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/json", ""):
        return SearchInput(await run_in_threadpool(_body, await request.body()))
    if content_type != "multipart/form-data":
        raise ApiError(
            415, f"unsupported content type {content_type!r}; send application/json or "
            "multipart/form-data (a `query` part and `images` parts)",
        )  # fmt: skip
    try:
        form = await request.form(
            max_files=MAX_UPLOADS, max_fields=4, max_part_size=MAX_FIELD_BYTES
        )
    except HTTPException as exc:  # Starlette says 400 for every form limit
        if exc.status_code == 400 and str(exc.detail).startswith("Too many files"):
            raise TooLarge(
                f"more than {MAX_UPLOADS} images uploaded; the limit is {MAX_UPLOADS}"
            ) from None
        if exc.status_code == 400 and str(exc.detail).startswith("Too many fields"):
            raise TooLarge(
                "too many form parts; send a `query` part and `images` parts only"
            ) from None
        raise
    try:
        unknown = sorted(set(form.keys()) - {"query", "images"})
        if unknown:
            raise ApiError(422, f"unknown form part(s) {', '.join(unknown)}; use query and images")
        query = form.get("query")
        if query is None:
            raise ApiError(422, "the form has no `query` part (the search as JSON)")
        if not isinstance(query, str):  # sent as a file part (curl -F query=@search.json)
            query = await query.read(MAX_FIELD_BYTES + 1)
            if len(query) > MAX_FIELD_BYTES:
                raise ApiError(413, f"the `query` part is larger than {MAX_FIELD_BYTES} bytes")
        depth, members = settings.api_max_json_depth, settings.api_max_json_members
        check_json_shape(query, depth, members, "the `query` part")  # <= 256 KiB: fast
        search = SearchInput(await run_in_threadpool(_body, query))
        files = form.getlist("images")
        if len(files) > MAX_UPLOADS:
            raise TooLarge(f"{len(files)} images uploaded; the limit is {MAX_UPLOADS}")
        uploads: list[tuple[str, bytes]] = []
        for index, part in enumerate(files):
            name = str(getattr(part, "filename", None) or f"image {index + 1}")[:120]
            if isinstance(part, str):
                raise ApiError(422, f"`images` part {index + 1} is text, not a file upload")
            uploads.append((name, await part.read()))
        await _check_images(uploads, settings)
        if uploads:
            search.tmpdir = Path(tempfile.mkdtemp(prefix="pixseek-upload-"))
        try:
            for index, (name, data) in enumerate(uploads):
                path = search.tmpdir / f"{index}.img"  # type: ignore[operator]
                path.write_bytes(data)
                search.uploads.append(Upload(name, path))
        except BaseException:
            search.cleanup()
            raise
        return search
    finally:
        await form.close()


DECODERS = 2  # uploads decoded at once, over all requests: hostile ones cannot take every thread
_decoders: dict[int, anyio.CapacityLimiter] = {}


def _limiter() -> anyio.CapacityLimiter:
    import asyncio

    loop = id(asyncio.get_running_loop())  # a limiter belongs to one event loop
    if loop not in _decoders:
        _decoders.clear()
        _decoders[loop] = anyio.CapacityLimiter(DECODERS)
    return _decoders[loop]


async def _check_images(uploads: list[tuple[str, bytes]], settings: Settings) -> None:
    """Header sizes against the request's pixel budget, then a full decode of each, off the
    event loop and within PIXSEEK_API_DECODE_TIMEOUT_S."""
    if not uploads:
        return
    timeout = settings.api_decode_timeout_s
    try:
        with anyio.fail_after(timeout):
            await anyio.to_thread.run_sync(
                _decode_all, uploads, settings, abandon_on_cancel=True, limiter=_limiter()
            )
    except TimeoutError:
        raise TooLarge(
            f"decoding the uploaded images took longer than {timeout:g} s "
            "(PIXSEEK_API_DECODE_TIMEOUT_S); send smaller images"
        ) from None


def _decode_all(uploads: list[tuple[str, bytes]], settings: Settings) -> None:
    budget = settings.api_max_request_pixels
    total = 0
    for name, data in uploads:  # headers only: nothing is decoded yet
        total += _header_pixels(data, name)
    if total > budget:
        raise TooLarge(
            f"the uploaded images hold {total} pixels together; the limit per request is "
            f"{budget} (PIXSEEK_API_MAX_REQUEST_PIXELS): send smaller images"
        )
    for name, data in uploads:
        _check_image(data, name, settings.max_image_pixels)


def _header_pixels(data: bytes, name: str) -> int:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError(f"uploaded image {name!r} is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise InputError(
            f"uploaded image {name!r} cannot be used: not an image file (unknown or corrupt format)"
        ) from None
    return width * height


def _check_image(data: bytes, name: str, max_pixels: int) -> None:
    from pixseek.decode import ImageRejected, decode_image

    if not data:
        raise InputError(f"uploaded image {name!r} is empty")
    try:
        decode_image(data, max_pixels)
    except ImageRejected as exc:
        raise InputError(f"uploaded image {name!r} cannot be used: {exc}") from None
