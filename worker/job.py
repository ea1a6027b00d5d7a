"""One generative search, start to end: generate -> embed -> search ("visualize, then retrieve").

`run_job` is the one code path behind the Celery task (worker/tasks.py) and the in-process run of
`pixseek search --generate` without a broker. It reports progress through a callback, in the order
the job moves: LOADING (the pipeline, first job of a process only), GENERATING (images done/total,
denoising step), EMBEDDING, SEARCHING; the caller records SUCCESS with the returned result.

Cheap checks come first, so bad input fails before any GPU time is spent: the spec, the filter,
the collection, the CLIP model the collection was built with, then the pipeline and the prompt's
token count. Images already in the cache (same model, prompt, seed, steps, size, guidance, negative
prompt) are not generated again, and a job whose images are all cached never loads the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image
from pixseek.search.engine import PlannedSearch, check_model, execute
from pixseek.search.filters import compile_filters
from pixseek.search.fusion import fuse, score_kind
from pixseek.search.text_encoder import query_encoder
from pixseek.worker.images import ImageCache
from pixseek.worker.records import GeneratedImage, JobResult, JobState
from pixseek.worker.spec import JobSpec

from pixseek.config import Settings
from pixseek.errors import CollectionNotFound, UserError
from pixseek.models import t2i_backends
from pixseek.models.generation import GenerationParams
from pixseek.models.registry import check_compatible
from pixseek.models.rewrite import rewrite_query
from pixseek.store import open_store
from pixseek.store.base import CLIP_VECTOR, DINO_VECTOR, CollectionInfo

Progress = Callable[[str, dict[str, Any]], None]
PROGRESS_INTERVAL_S = 0.25  # at most this often per denoising step; stage changes always


class JobCancelled(Exception):
    """Raised between denoising steps (or stages) once a cancel was requested."""


def _no_progress(state: str, meta: dict[str, Any]) -> None:
    return None


def _never() -> bool:
    return False


class _Job:
    def __init__(
        self,
        settings: Settings,
        spec: JobSpec,
        job_id: str,
        progress: Progress,
        cancelled: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.job_id = job_id
        self._progress = progress
        self._cancelled = cancelled
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self._last_report = 0.0

    def report(self, state: str, throttle: bool = False, **meta: Any) -> None:
        now = time.monotonic()
        if throttle and now - self._last_report < PROGRESS_INTERVAL_S:
            return
        self._last_report = now
        self._progress(state, {"stage": state.lower(), "job_id": self.job_id, **meta})

    def check_cancel(self) -> None:
        if self._cancelled():
            raise JobCancelled(self.job_id)

    # -- stages --------------------------------------------------------------------------------

    def generate(self, params: GenerationParams) -> tuple[list[Image.Image], list[GeneratedImage]]:
        spec, settings = self.spec, self.settings
        cache = ImageCache(settings.cache_dir / "generated")
        backend = t2i_backends.resolve(settings.t2i_model)
        fingerprint = backend.fingerprint()
        keys = [cache.key(fingerprint, params, seed) for seed in spec.seeds]
        images: dict[int, Image.Image] = {}
        for index, key in enumerate(keys):
            cached = cache.load(key)
            if cached is not None:
                images[index] = cached
        records = [
            GeneratedImage(
                index=i,
                seed=seed,
                path=str(cache.path(keys[i])),
                cached=i in images,
                flagged=i in images and bool(cache.meta(keys[i]).get("flagged")),
            )
            for i, seed in enumerate(spec.seeds)
        ]
        missing = [i for i in range(spec.n_images) if i not in images]
        started = time.perf_counter()
        if missing:
            if not backend.is_loaded():
                backend.check()
                self.report(JobState.LOADING, model=settings.t2i_model)
            t2i = backend.load(settings.device)
            self.timings["load"] = round(time.perf_counter() - started, 4)
            t2i.check_size(params.width, params.height)
            t2i.check_prompt(params.prompt)
            t2i.check_prompt(params.negative_prompt, "negative prompt")
            started = time.perf_counter()
            done, total = spec.n_images - len(missing), spec.n_images
            batch = max(1, settings.t2i_batch_size)
            for first in range(0, len(missing), batch):
                chunk = missing[first : first + batch]
                self.check_cancel()
                self.report(
                    JobState.GENERATING,
                    done=done,
                    total=total,
                    batch=len(chunk),
                    step=0,
                    steps=params.steps,
                )

                def on_step(
                    step: int, steps: int, done: int = done, size: int = len(chunk)
                ) -> None:
                    self.check_cancel()
                    self.report(
                        JobState.GENERATING,
                        throttle=step < steps,
                        done=done,
                        total=total,
                        batch=size,
                        step=step,
                        steps=steps,
                    )

                generated = t2i.generate(params, [spec.seeds[i] for i in chunk], on_step)
                for index, item in zip(chunk, generated, strict=True):
                    meta = {
                        "model": settings.t2i_model,
                        "seed": item.seed,
                        "flagged": item.flagged,
                        **asdict(params),
                    }
                    cache.put(keys[index], item.image, meta)
                    images[index] = item.image
                    records[index].flagged = item.flagged
                done += len(chunk)
            self.report(
                JobState.GENERATING, done=done, total=total, batch=0, step=0, steps=params.steps
            )
        self.timings["generation"] = round(time.perf_counter() - started, 4)
        return [images[i] for i in range(spec.n_images)], records

    def embed(
        self, info: CollectionInfo, images: list[Image.Image], records: list[GeneratedImage]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self.check_cancel()
        self.report(JobState.EMBEDDING, images=len(images))
        started = time.perf_counter()
        encoder = query_encoder(self.settings)
        text = encoder.encode_text(self.spec.prompt, self.spec.ensemble)
        usable = [img for img, rec in zip(images, records, strict=True) if not rec.flagged]
        if len(usable) < len(images):
            self.warnings.append(
                f"{len(images) - len(usable)} generated image(s) were blanked by the model's "
                "safety checker and left out of the search"
            )
        vectors: dict[str, np.ndarray] = {}
        if usable:
            vectors[CLIP_VECTOR] = encoder.model.embed_images(usable)
            if DINO_VECTOR in info.vectors and self.settings.dino_model:
                from pixseek.models.dino import load_dino

                dino = load_dino(self.settings.dino_model, self.settings.device)
                configured = {DINO_VECTOR: (dino.identifier, dino.dim)}
                check_compatible(info.name, info.metadata, info.vectors, configured)
                vectors[DINO_VECTOR] = dino.embed_images(usable)
        self.timings["embedding"] = round(time.perf_counter() - started, 4)
        return text, vectors

    def search(self, text: np.ndarray, vectors: dict[str, np.ndarray], store: Any, flt: Any):
        self.check_cancel()
        self.report(JobState.SEARCHING)
        started = time.perf_counter()
        fusion = self.spec.fusion
        if fusion != "text" and not vectors:
            self.warnings.append(f"no usable generated image; searched by text instead of {fusion}")
            fusion = "text"
        plan = fuse(fusion, text, vectors, self.spec.alpha)
        planned = PlannedSearch(plan, 1.0, flt, f"{fusion} fusion of {self.spec.prompt!r}")
        hits = execute(
            store,
            self.spec.collection,
            planned,
            self.spec.limit,
            0,
            self.spec.threshold,
            diversity=self.spec.diversity,
        )
        self.timings["search"] = round(time.perf_counter() - started, 4)
        return hits, score_kind(plan)


def run_job(
    settings: Settings,
    spec: JobSpec,
    job_id: str,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    deliveries: int = 1,
) -> JobResult:
    """Run one job. A PixseekError other than ServiceUnavailable fails it without retries."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    spec = spec.validated()
    job = _Job(settings, spec, job_id, progress or _no_progress, cancelled or _never)
    params = spec.generation(settings)
    flt = compile_filters(spec.where)
    store = open_store(settings)
    try:
        info = store.get_collection(spec.collection)
        if info is None:
            raise CollectionNotFound(spec.collection)
        if CLIP_VECTOR not in info.vectors:
            raise UserError(f"collection {spec.collection!r} has no {CLIP_VECTOR!r} vectors")
        check_model(info, query_encoder(settings))
        job.check_cancel()
        if spec.n_images and settings.t2i_rewrite_model:
            started_rewrite = time.perf_counter()
            params = replace(params, prompt=rewrite_query(params.prompt, settings))
            job.timings["rewrite"] = round(time.perf_counter() - started_rewrite, 4)
        images, records = job.generate(params) if spec.n_images else ([], [])
        text, vectors = job.embed(info, images, records)
        hits, kind = job.search(text, vectors, store, flt)
    finally:
        store.close()  # a server client's connections; the embedded store only flushes
    job.timings["total"] = round(time.perf_counter() - started, 4)
    shown = {k: v for k, v in asdict(params).items() if k != "prompt"}
    if params.prompt != spec.prompt:  # rewritten before generation (PIXSEEK_T2I_REWRITE_MODEL)
        shown["generation_prompt"] = params.prompt
    return JobResult(
        job_id=job_id,
        query=spec.to_dict(),
        collection=spec.collection,
        fusion=spec.fusion,
        score_kind=kind,
        model=settings.t2i_model,
        params=shown,
        generated=records,
        hits=hits,
        timings=job.timings,
        warnings=job.warnings,
        deliveries=deliveries,
        started_at=started_at.isoformat(timespec="seconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
