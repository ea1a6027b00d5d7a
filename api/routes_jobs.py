"""/jobs: generative searches (generate reference images from the prompt, embed them, search)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, JSONResponse
from pixseek.api.app import Services, services
from pixseek.api.errors import ApiError, ErrorOut, NotFound
from pixseek.api.limits import filter_limits
from pixseek.api.paths import public_generated, redact
from pixseek.api.routes_search import hit_out
from pixseek.api.schemas import JobBody, JobOut, JobResultOut
from pixseek.search.filters import compile_filters
from pixseek.worker.records import JobState, JobStatus
from pixseek.worker.spec import JobSpec

from pixseek.config import Settings
from pixseek.errors import CollectionNotFound
from pixseek.store.base import check_collection_name

router = APIRouter(tags=["jobs"])
JobParam = Path(max_length=200, description="Job id (a UUID)", json_schema_extra={"format": "uuid"})
CONFLICT = {409: {"model": ErrorOut, "description": "The job has no result (yet)"}}


def check_job_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ApiError(422, f"{value[:80]!r} is not a job id; job ids are UUIDs") from None


def _base(request: Request) -> str:
    return request.scope.get("root_path", "")


def job_out(base: str, status: JobStatus, settings: Settings | None = None) -> JobOut:
    done = status.state == JobState.SUCCESS
    shown = (lambda text: redact(text, settings)) if settings is not None else (lambda text: text)
    return JobOut(
        job_id=status.job_id,
        state=status.state,
        status=shown(status.describe()),
        finished=status.finished,
        progress={k: shown(v) if isinstance(v, str) else v for k, v in (status.meta or {}).items()},
        error=shown(status.error) if status.error else None,
        result_url=f"{base}/jobs/{status.job_id}/result" if done else None,
    )


@router.post("/jobs", status_code=202, response_model=JobOut)
def submit(request: Request, body: JobBody) -> JSONResponse:
    """Queue a generative search; returns at once with the job id (poll GET /jobs/{id})."""
    svc = services(request)
    data = body.model_dump(exclude={"filter"})
    if body.filter is not None:
        data["where"] = [*body.where, json.dumps(body.filter)]
    spec = JobSpec.from_dict(data)
    # Bad input is refused before any GPU time is spent; the API's bounds apply here too.
    compile_filters(spec.where, "where", filter_limits(svc.settings))
    if svc.store.get_collection(check_collection_name(spec.collection)) is None:
        raise CollectionNotFound(spec.collection)
    job_id = svc.jobs.submit(spec)
    out = job_out(_base(request), svc.jobs.status(job_id), svc.settings)
    return JSONResponse(
        out.model_dump(), status_code=202, headers={"Location": f"{_base(request)}/jobs/{job_id}"}
    )


@router.get("/jobs/{job_id}", response_model=JobOut)
def status(request: Request, job_id: str = JobParam) -> JobOut:
    """State and progress: QUEUED ... GENERATING (done/total, step/steps) ... SUCCESS."""
    svc = services(request)
    return job_out(_base(request), svc.jobs.status(check_job_id(job_id)), svc.settings)


def _finished_result(svc: Services, job_id: str) -> dict[str, Any]:
    status = svc.jobs.status(check_job_id(job_id))
    if status.state == JobState.SUCCESS and status.result is not None:
        return status.result
    if status.state == JobState.FAILURE:
        raise ApiError(409, f"job {status.job_id} failed: {status.error}")
    if status.state == JobState.REVOKED:
        raise ApiError(409, f"job {status.job_id} was cancelled; it has no result")
    raise ApiError(409, f"job {status.job_id} is not finished ({status.describe()})")


@router.get("/jobs/{job_id}/result", response_model=JobResultOut, responses=CONFLICT)
def result(request: Request, job_id: str = JobParam) -> dict[str, Any]:
    """The generated images (with download URLs) and the ranked hits of a finished job."""
    svc = services(request)
    found = _finished_result(svc, job_id)
    base, collection = _base(request), found.get("collection", "")
    job_url = f"{base}/jobs/{found.get('job_id', job_id)}"
    show = svc.settings.api_show_paths
    generated = [
        {**public_generated(record, show), "url": f"{job_url}/images/{index}"}
        for index, record in enumerate(found.get("generated") or [])
    ]
    hits = [
        hit_out(base, collection, hit.get("rank", 0), hit, show) for hit in found.get("hits") or []
    ]
    named = {  # a local model directory or a warning may name server paths
        "model": redact(str(found.get("model") or ""), svc.settings) or found.get("model"),
        "warnings": [redact(str(w), svc.settings) for w in found.get("warnings") or []],
    }
    hits_out = [h.model_dump() for h in hits]
    return {**found, **named, "generated": generated, "hits": hits_out}


@router.get(
    "/jobs/{job_id}/images/{index}",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
        **CONFLICT,
    },
)
def generated_image(
    request: Request, job_id: str = JobParam, index: int = Path(ge=0, le=1000)
) -> FileResponse:
    """Generated reference image number `index` of a finished job (PNG)."""
    svc = services(request)
    found = _finished_result(svc, job_id)
    records = found.get("generated") or []
    if index >= len(records):
        raise NotFound(f"job {job_id} generated {len(records)} image(s); there is no {index}")
    path = _inside_cache(svc, records[index].get("path"))
    if path is None:
        raise NotFound(
            f"generated image {index} of job {job_id} is not on this server's disk "
            "(workers and the API need the same PIXSEEK_DATA_DIR)"
        )
    return FileResponse(path, media_type="image/png", filename=f"{job_id}-{index}.png")


def _inside_cache(svc: Services, recorded: Any) -> FilePath | None:
    """The job result's own path, only when it is a file inside the generated-image cache."""
    if not isinstance(recorded, str) or not recorded:
        return None
    cache = (svc.settings.cache_dir / "generated").resolve()
    path = FilePath(recorded).resolve()
    if not path.is_relative_to(cache) or path.suffix != ".png" or not path.is_file():
        return None
    return path


@router.delete("/jobs/{job_id}", response_model=JobOut)
def cancel(request: Request, job_id: str = JobParam) -> JobOut:
    """Cancel a job: at once when queued, within one denoising step when running."""
    svc = services(request)
    return job_out(_base(request), svc.jobs.cancel(check_job_id(job_id)), svc.settings)
