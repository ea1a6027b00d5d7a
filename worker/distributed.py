"""`pixseek ingest --distributed`: plan and finish in this process, embed on `pixseek worker`s.

The run is the in-process one (ingest/pipeline.py `run_ingest`) with its embed step swapped:
- Keep and Reject items (no image to read) are carried out here, by the pipeline's own step;
- the Fetch items are cut into shards of `shard_size` files and queued on the workers' queue
  (PIXSEEK_JOB_QUEUE) as `pixseek.ingest_shard` tasks (worker/ingest_tasks.py), at most
  `IN_FLIGHT` at a time; any number of workers, on any machines that see the same paths, take
  them;
- finished shards are merged, in plan order, into one outcome; the pipeline's finish step then
  makes copies of identical content, deletes replaced and pruned points and records the roots,
  exactly as after a local run, so the summary and the exit code are the same.
Content that a worker embedded although an earlier shard (or the collection) already held it is
turned into a copy here, as a local run would have made it: same points, same counts.

Nothing is deleted before every shard is done: a run that fails or is interrupted (a shard that
fails for good, Ctrl-C) leaves what the workers stored, and running it again skips that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from pixseek.ingest.embed import EmbedOutcome, Hashed
from pixseek.ingest.pipeline import EmbedStep, IngestOptions, Progress, embed_in_process
from pixseek.ingest.plan import Fetch, Plan
from pixseek.ingest.state import CollectionState
from pixseek.worker.app import backend_url, broker_url, check_reachable, create_app
from pixseek.worker.client import readable_error
from pixseek.worker.ingest_tasks import (
    INGEST_TASK,
    decode_point,
    encode_fetch,
    holds_store_in_process,
)

from pixseek.config import Settings
from pixseek.errors import ServiceUnavailable, UserError
from pixseek.models.bundle import ImageEmbedders
from pixseek.store import VectorStore

log = logging.getLogger(__name__)

SHARD_FILES = 256
IN_FLIGHT = 64  # shards queued at once: enough for many workers, bounded broker memory
POLL_S = 0.2
QUIET_WARNING_S = 60.0  # no shard finished this long: say where the workers should be


def distributed_embed(settings: Settings, shard_size: int = SHARD_FILES) -> EmbedStep:
    """The embed step that spreads the Fetch items over the workers of `settings`' broker."""
    app = create_app(settings)
    check_reachable(broker_url(settings), "broker")
    check_reachable(backend_url(settings), "result backend")

    def embed(
        store: VectorStore,
        embedders: ImageEmbedders,
        state: CollectionState,
        work: Plan,
        options: IngestOptions,
        on_progress: Progress | None,
    ) -> EmbedOutcome:
        total = len(work.work)
        report = on_progress or (lambda done, total: None)
        local = Plan(work=[w for w in work.work if not isinstance(w, Fetch)])
        outcome = embed_in_process(
            store, embedders, state, local, options, lambda done, _: report(done, total)
        )
        fetches = [w for w in work.work if isinstance(w, Fetch)]
        shards = [fetches[i : i + shard_size] for i in range(0, len(fetches), shard_size)]
        info = store.get_collection(options.collection)
        spec = {
            "collection": options.collection,
            "models": embedders.metadata["models"],
            "vectors": dict(getattr(info, "vectors", {})),
            "sparse_vectors": list(getattr(info, "sparse_vectors", [])),
            "batch_size": options.batch_size,
            "max_pixels": options.max_pixels,
            "write": "coordinator" if holds_store_in_process(store) else "worker",
        }
        done = len(local.work)

        def finished(shard: list[Fetch], result: dict[str, Any]) -> None:
            nonlocal done
            if spec["write"] == "coordinator":
                write_shard(store, options.collection, result)
            done += len(shard)
            report(done, total)

        results = _run_shards(app, settings.job_queue, spec, shards, finished)
        for shard, result in zip(shards, results, strict=True):
            _merge(outcome, state, shard, result)
        return outcome

    return embed


def _run_shards(
    app: Celery,
    queue: str,
    spec: dict[str, Any],
    shards: list[list[Fetch]],
    finished: Callable[[list[Fetch], dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Queue the shards (at most IN_FLIGHT at once) and wait for all; results in shard order."""
    results: list[dict[str, Any] | None] = [None] * len(shards)
    pending: dict[int, AsyncResult] = {}
    sent = 0
    quiet_since: float | None = time.monotonic()
    try:
        while sent < len(shards) or pending:
            while sent < len(shards) and len(pending) < IN_FLIGHT:
                items = [encode_fetch(fetch) for fetch in shards[sent]]
                pending[sent] = app.send_task(
                    INGEST_TASK, args=[{**spec, "items": items}], queue=queue
                )
                sent += 1
            ready = [n for n, result in pending.items() if result.ready()]
            if ready:
                quiet_since = None
            elif quiet_since is not None and time.monotonic() - quiet_since > QUIET_WARNING_S:
                log.warning(
                    "no ingest shard done after %.0f s: is a `pixseek worker` running on queue "
                    "%r of this broker? Waiting on (Ctrl-C stops the run, nothing is lost)",
                    QUIET_WARNING_S,
                    queue,
                )
                quiet_since = None
            if not ready:
                time.sleep(POLL_S)
            for n in ready:
                results[n] = _take(pending.pop(n), n, len(shards))
                finished(shards[n], results[n])
    except BaseException:
        for result in pending.values():  # the run stops here: workers need not embed the rest
            result.revoke()
        raise
    return [result for result in results if result is not None]


def _take(result: AsyncResult, n: int, count: int) -> dict[str, Any]:
    try:
        if result.successful():
            return dict(result.get())
        error = result.result
        reason = readable_error(error) if isinstance(error, BaseException) else str(error)
        failure = UserError if type(error).__name__ == "JobFailed" else ServiceUnavailable
        raise failure(
            f"ingest shard {n + 1} of {count} failed on a worker: {reason}; nothing was deleted, "
            "run the ingest again to store the rest"
        )
    finally:
        result.forget()  # its points may be in it: do not leave them in Redis for a week


def write_shard(store: VectorStore, collection: str, result: dict[str, Any]) -> None:
    """A shard's writes, for the embedded store that only this process may write."""
    points = [decode_point(point) for point in result.get("points", [])]
    if points:
        store.upsert(collection, points)
    for point_id, payload in result.get("payloads", []):
        store.set_payload(collection, point_id, payload)


def _merge(
    outcome: EmbedOutcome, state: CollectionState, shard: list[Fetch], result: dict[str, Any]
) -> None:
    """Add one shard's outcome to the run's, in plan order: as if one process had embedded it."""
    outcome.stored.update(result["stored"])
    outcome.replaces.update({new: frozenset(old) for new, old in result["replaces"].items()})
    for index, sha, point_id in result["copies"]:
        outcome.copies.append(Hashed(shard[index], sha, point_id))
    for index, sha, point_id in result["embedded"]:
        if sha in state.by_sha or sha in outcome.embedded:  # held before this shard: a copy
            outcome.stored.discard(point_id)
            outcome.replaces.pop(point_id, None)
            outcome.copies.append(Hashed(shard[index], sha, point_id))
        else:
            outcome.embedded[sha] = point_id
            outcome.added += 1
    outcome.failed_content.update(result["failed_content"])
    outcome.failed.extend((source, reason) for source, reason in result["failed"])
    outcome.updated += int(result["updated"])
    outcome.model_seconds += float(result["model_seconds"])
