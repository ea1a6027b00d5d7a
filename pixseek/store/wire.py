"""JSON forms of the store's records, for RemoteStore and the server routes that answer it.

One module encodes and decodes both ways, so client and server cannot drift apart. Errors travel
as their class name and message and are raised again as the same class on the client, so a
delegated command prints the same line and exits with the same code as one run in process.
"""

from __future__ import annotations

from typing import Any

from qdrant_client import models

import pixseek.errors as errors_module
from pixseek.errors import PixseekError
from pixseek.store.base import (
    CollectionInfo,
    Hit,
    IndexStatus,
    Nearest,
    PointRecord,
    RankFusion,
    Recommend,
    SearchRequest,
    StoredPoint,
    as_list,
)
from pixseek.store.options import StorageOptions


def info_out(info: CollectionInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "points": info.points,
        "vectors": info.vectors,
        "metadata": info.metadata,
        "storage": info.storage.as_dict(),
    }


def info_in(data: dict[str, Any]) -> CollectionInfo:
    return CollectionInfo(
        name=data["name"],
        points=int(data["points"]),
        vectors={k: int(v) for k, v in data["vectors"].items()},
        metadata=data.get("metadata") or {},
        storage=StorageOptions.from_dict(data.get("storage")),
    )


def point_out(point: PointRecord) -> dict[str, Any]:
    vectors = {name: as_list(v) for name, v in point.vectors.items()}
    return {"id": point.id, "vectors": vectors, "payload": point.payload}


def point_in(data: dict[str, Any]) -> PointRecord:
    return PointRecord(str(data["id"]), dict(data["vectors"]), dict(data.get("payload") or {}))


def stored_out(point: StoredPoint) -> dict[str, Any]:
    return {"id": point.id, "payload": point.payload, "vectors": point.vectors}


def stored_in(data: dict[str, Any]) -> StoredPoint:
    return StoredPoint(data["id"], data.get("payload") or {}, data.get("vectors") or {})


def hit_in(data: dict[str, Any]) -> Hit:
    return Hit(data["id"], float(data["score"]), data.get("payload") or {})


def index_in(data: dict[str, Any]) -> IndexStatus:
    return IndexStatus(**data)


def filter_out(flt: models.Filter | None) -> dict[str, Any] | None:
    return None if flt is None else flt.model_dump(mode="json", exclude_none=True)


def filter_in(data: dict[str, Any] | None) -> models.Filter | None:
    return None if data is None else models.Filter.model_validate(data)


def _nearest_out(plan: Nearest) -> dict[str, Any]:
    return {"vector": as_list(plan.vector), "using": plan.using}


def request_out(request: SearchRequest) -> dict[str, Any]:
    plan = request.plan
    if isinstance(plan, Nearest):
        encoded: dict[str, Any] = {"kind": "nearest", **_nearest_out(plan)}
    elif isinstance(plan, Recommend):
        encoded = {
            "kind": "recommend",
            "positives": [as_list(v) for v in plan.positives],
            "negatives": [as_list(v) for v in plan.negatives],
            "using": plan.using,
        }
    else:
        encoded = {
            "kind": "rrf",
            "searches": [_nearest_out(s) for s in plan.searches],
            "weights": plan.weights,
            "k": plan.k,
            "candidates": plan.candidates,
        }
    return {
        "plan": encoded,
        "limit": request.limit,
        "offset": request.offset,
        "filter": filter_out(request.filter),
        "threshold": request.threshold,
    }


def request_in(data: dict[str, Any]) -> SearchRequest:
    plan = data["plan"]
    kind = plan["kind"]
    decoded: Nearest | Recommend | RankFusion
    if kind == "nearest":
        decoded = Nearest(plan["vector"], plan["using"])
    elif kind == "recommend":
        decoded = Recommend(plan["positives"], plan["negatives"], plan["using"])
    elif kind == "rrf":
        searches = [Nearest(s["vector"], s["using"]) for s in plan["searches"]]
        decoded = RankFusion(searches, plan.get("weights"), plan["k"], plan["candidates"])
    else:
        raise errors_module.InputError(f"unknown query plan {kind!r}")
    return SearchRequest(
        decoded, data["limit"], data["offset"], filter_in(data.get("filter")), data.get("threshold")
    )


def error_out(exc: PixseekError) -> dict[str, Any]:
    return {"detail": exc.message, "error": type(exc).__name__, "hint": exc.hint}


def error_in(data: dict[str, Any], status: int) -> PixseekError:
    """The same error class the server raised (its base class when this side lacks it)."""
    cls = getattr(errors_module, str(data.get("error")), None)
    if not (isinstance(cls, type) and issubclass(cls, PixseekError)):
        cls = errors_module.ServiceUnavailable if status >= 500 else errors_module.UserError
    exc = cls.__new__(cls)
    Exception.__init__(exc, str(data.get("detail") or f"the server answered {status}"))
    exc.hint = data.get("hint")
    return exc
