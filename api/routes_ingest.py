"""/ingest: ingest jobs in the server (server-side paths under allowed roots, or an upload).

`POST /ingest` takes server-side paths; each must lie under one of PIXSEEK_INGEST_ROOTS (off
when none is set), checked on the resolved path (so `..` and symlinks cannot leave the roots)
and, for folders, on every symlink inside them (ingest follows symlinked folders). Local pixseek
commands need none of this: they prove they are local with the data dir's secret.
`POST /ingest/upload` streams a tar or zip archive into the data dir (size-limited) and ingests
it; the archive stays there, since search results read their images back from it.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pixseek.api.app import is_local, services
from pixseek.api.errors import ErrorOut
from pixseek.api.ingest_jobs import IngestJob, IngestRequest
from pixseek.api.routes_jobs import CONFLICT, JobParam, check_job_id
from pixseek.api.schemas import JobOut
from pydantic import BaseModel, ConfigDict, Field

from pixseek.errors import Conflict, Forbidden, InputError, NotFound, TooLarge
from pixseek.media import is_archive
from pixseek.store.base import check_collection_name
from pixseek.store.options import QUANTIZATIONS, StorageOptions

router = APIRouter(tags=["ingest"])
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class IngestBody(BaseModel):
    """The `pixseek ingest` options; paths are paths on the server."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(min_length=1, max_length=64)
    collection: str = Field(min_length=1, max_length=63)
    labels: str | None = Field(None, max_length=4096, description="Server-side sidecar file.")
    labels_from_folders: bool = False
    prune: bool = False
    batch_size: int | None = Field(None, ge=1, le=1024)
    optimize: bool | None = None
    quantization: str | None = Field(None, description=f"For a new collection: {QUANTIZATIONS}")
    on_disk: bool | None = None
    hnsw_m: int | None = Field(None, ge=4, le=4096)
    hnsw_ef_construct: int | None = Field(None, ge=4, le=4096)

    def storage(self) -> StorageOptions | None:
        given = (self.quantization, self.on_disk, self.hnsw_m, self.hnsw_ef_construct)
        if all(v is None for v in given):
            return None
        return StorageOptions(
            quantization=self.quantization or "none",
            on_disk=bool(self.on_disk),
            hnsw_m=self.hnsw_m,
            hnsw_ef_construct=self.hnsw_ef_construct,
        ).validated()


def ingest_out(request: Request, job: IngestJob) -> JobOut:
    base = f"{request.scope.get('root_path', '')}/ingest/{job.job_id}"
    return JobOut(
        job_id=job.job_id,
        state=job.state,
        status=job.describe(),
        finished=job.finished,
        progress={} if job.finished else dict(job.progress),
        error=job.error,
        result_url=f"{base}/result" if job.state == "SUCCESS" else None,
    )


def check_path(raw: str, roots: list[Path]) -> str:
    """`raw` resolved, when it and every symlink under it stay inside `roots`; else 403."""
    if "\x00" in raw or not raw.strip():
        raise InputError("a path is empty or holds a NUL byte")
    path = Path(raw)
    if not path.is_absolute():
        raise Forbidden(f"{raw!r} is not an absolute path on the server")
    lexical = Path(os.path.normpath(path))
    if not any(lexical.is_relative_to(root) for root in roots):
        raise Forbidden(f"{raw!r} is outside the allowed ingest roots (PIXSEEK_INGEST_ROOTS)")
    if not path.exists():
        raise NotFound(f"{raw!r} does not exist on the server")
    real = path.resolve()
    if not any(real.is_relative_to(root) for root in roots):
        raise Forbidden(f"{raw!r} leads outside the allowed ingest roots through a symlink")
    if real.is_dir():
        for folder, dirs, files in os.walk(real):
            for entry in (*dirs, *files):
                inner = Path(folder) / entry
                if inner.is_symlink():
                    target = inner.resolve()
                    if not any(target.is_relative_to(root) for root in roots):
                        shown = inner.relative_to(real)
                        raise Forbidden(
                            f"{raw!r} holds a symlink that leads outside the allowed ingest "
                            f"roots: {shown}"
                        )
    return str(real)


def _roots(request: Request) -> list[Path] | None:
    """None: any local path (a local pixseek command); else the resolved allowed roots."""
    if is_local(request):
        return None
    roots = [Path(r).resolve() for r in services(request).settings.ingest_roots if r.strip()]
    if not roots:
        raise Forbidden(
            "ingest by server-side path is off on this server: set PIXSEEK_INGEST_ROOTS to the "
            "folders it may read, or upload an archive to POST /ingest/upload"
        )
    return roots


def _submit(request: Request, job_request: IngestRequest) -> JSONResponse:
    job = services(request).ingest.submit(job_request)
    out = ingest_out(request, job)
    location = f"{request.scope.get('root_path', '')}/ingest/{job.job_id}"
    return JSONResponse(out.model_dump(), status_code=202, headers={"Location": location})


FORBIDDEN = {
    403: {"model": ErrorOut, "description": "A path outside PIXSEEK_INGEST_ROOTS (or none set)"}
}


@router.post("/ingest", status_code=202, response_model=JobOut, responses=FORBIDDEN)
async def ingest(request: Request, body: IngestBody) -> JSONResponse:
    """Start an ingest job of server-side paths; poll GET /ingest/{id} for its progress."""
    check_collection_name(body.collection)
    roots = _roots(request)

    def checked() -> tuple[list[str], str | None]:
        if roots is None:
            return body.paths, body.labels
        labels = check_path(body.labels, roots) if body.labels else None
        return [check_path(p, roots) for p in body.paths], labels

    paths, labels = await run_in_threadpool(checked)
    job_request = IngestRequest(
        paths=paths,
        collection=body.collection,
        labels=labels,
        labels_from_folders=body.labels_from_folders,
        prune=body.prune,
        batch_size=body.batch_size,
        optimize=body.optimize,
        storage=body.storage(),
    )
    return _submit(request, job_request)


@router.post(
    "/ingest/upload",
    status_code=202,
    response_model=JobOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload(
    request: Request,
    collection: str = Query(min_length=1, max_length=63),
    filename: str = Query(min_length=1, max_length=255, description="e.g. photos.tar.gz"),
    labels_from_folders: bool = False,
    quantization: str | None = Query(None, description=f"For a new collection: {QUANTIZATIONS}"),
    on_disk: bool | None = None,
) -> JSONResponse:
    """Upload a tar or zip archive as the request body and ingest it (size-limited)."""
    check_collection_name(collection)
    name = _SAFE_NAME.sub("_", Path(filename).name).lstrip(".") or "upload"
    if not is_archive(Path(name)):
        raise InputError(f"{filename!r} is not a tar or zip archive name (.tar, .tar.gz, .zip...)")
    svc = services(request)
    storage = None
    if quantization is not None or on_disk is not None:
        storage = StorageOptions(quantization or "none", bool(on_disk)).validated()
    limit = svc.settings.ingest_max_upload_bytes
    target = svc.settings.data_dir / "uploads" / str(uuid.uuid4()) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    received = 0
    try:
        with target.open("wb") as handle:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise TooLarge(
                        f"the archive is larger than {limit} bytes (PIXSEEK_INGEST_MAX_UPLOAD_BYTES)"
                    )
                handle.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        target.parent.rmdir()
        raise
    if received == 0:
        target.unlink()
        target.parent.rmdir()
        raise InputError("the upload is empty: send the archive as the request body")
    job_request = IngestRequest(
        paths=[str(target)],
        collection=collection,
        labels_from_folders=labels_from_folders,
        storage=storage,
    )
    return _submit(request, job_request)


@router.get("/ingest/{job_id}", response_model=JobOut)
def status(request: Request, job_id: str = JobParam) -> JobOut:
    """State and progress: QUEUED, LOADING, INGESTING (done/total), SUCCESS, FAILURE, REVOKED."""
    return ingest_out(request, services(request).ingest.get(check_job_id(job_id)))


@router.get("/ingest/{job_id}/result", responses=CONFLICT)
def result(request: Request, job_id: str = JobParam) -> dict:
    """The summary of a finished ingest job (as `pixseek ingest --json` prints it)."""
    job = services(request).ingest.get(check_job_id(job_id))
    if job.state == "SUCCESS" and job.result is not None:
        return job.result
    if job.state == "FAILURE":
        raise Conflict(f"ingest job {job.job_id} failed: {job.error}")
    if job.state == "REVOKED":
        raise Conflict(f"ingest job {job.job_id} was cancelled; it has no result")
    raise Conflict(f"ingest job {job.job_id} is not finished ({job.describe()})")


@router.delete("/ingest/{job_id}", response_model=JobOut)
def cancel(request: Request, job_id: str = JobParam) -> JobOut:
    """Cancel: at once when queued, at the next file when running (stored points are kept)."""
    return ingest_out(request, services(request).ingest.cancel(check_job_id(job_id)))
