"""Duplicate and near-duplicate groups of a collection, found by batched Qdrant queries.

Tiers:
  exact    same bytes: points with the same sha256 (several file locations of one content);
  near     the same picture re-encoded, resized, slightly cropped or edited: perceptual hashes
           within `max_distance` bits (one exact Qdrant search per point on the `phash` vector,
           in batches), each pair confirmed by the CLIP cosine when `confirm` is set;
  similar  the same scene or burst: CLIP cosine >= `similarity`, optionally only between
           pictures taken within `time_window` seconds of each other (EXIF `taken`).
Pairs are joined into groups (union-find). Each group suggests a keeper: the largest pixel
count, then the oldest (`taken`, else the file's mtime), then the shortest path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from qdrant_client import models

from pixseek.errors import CollectionNotFound, InputError, Misconfigured
from pixseek.phash import (
    PHASH_VECTOR,
    from_hex,
    hamming,
    score_for_distance,
    to_vector,
)
from pixseek.store import CLIP_VECTOR, Nearest, SearchRequest, VectorStore

TIERS = ("exact", "near", "similar")
# Chosen on bench/results/duplicates.md: pHash <= 10 bits kept every pair of distinct pictures
# apart (precision 1.0) and found 98% of re-encoded, resized and <= 5% cropped copies.
NEAR_MAX_DISTANCE = 10
NEAR_CONFIRM = 0.80  # CLIP cosine a near pair must also reach (not measurable without weights)
SIMILAR_COSINE = 0.92
FIELDS = ["root", "source", "width", "height", "bytes", "taken", "mtime", "sha256", PHASH_VECTOR]


@dataclass
class DuplicateOptions:
    tier: str = "near"
    max_distance: int = NEAR_MAX_DISTANCE  # near: Hamming bits
    confirm: float | None = NEAR_CONFIRM  # near: CLIP cosine, None = hash only
    similarity: float = SIMILAR_COSINE  # similar: CLIP cosine
    time_window: float | None = None  # similar: seconds between EXIF `taken` times
    neighbours: int = 64  # per query; a group larger than this still joins through its members
    batch_size: int = 256
    filter: models.Filter | None = None

    def with_threshold(self, threshold: float | None) -> DuplicateOptions:
        """--threshold / ?threshold=: hash bits for `near`, a cosine for `similar`."""
        if threshold is None:
            return self
        if not math.isfinite(threshold):
            raise InputError("the threshold must be a finite number")
        if self.tier == "near":
            if threshold != int(threshold):
                raise InputError("the near threshold is a whole number of hash bits (0-32)")
            self.max_distance = int(threshold)
        else:
            self.similarity = threshold
        return self

    def validated(self) -> DuplicateOptions:
        if self.tier not in TIERS:
            raise InputError(f"unknown tier {self.tier!r}; use one of {', '.join(TIERS)}")
        if not 0 <= self.max_distance <= 32:
            raise InputError(f"near threshold must be 0-32 bits, not {self.max_distance}")
        for name, value in (("similarity", self.similarity), ("confirm", self.confirm)):
            if value is not None and not -1.0 <= value <= 1.0:
                raise InputError(f"{name} must be a cosine between -1 and 1, not {value}")
        if self.time_window is not None and self.time_window < 0:
            raise InputError("the time window must be >= 0 seconds")
        return self


@dataclass
class Group:
    tier: str
    points: list[dict[str, Any]]  # id, source, root, width, height, bytes, taken, distance
    keep: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "size": len(self.points),
            "keep": self.keep,
            "reason": self.reason,
            "points": self.points,
        }


@dataclass
class DuplicateReport:
    collection: str
    tier: str
    groups: list[Group] = field(default_factory=list)
    points: int = 0  # points looked at
    unhashed: int = 0  # near tier: points without a hash (run --update-hashes)
    queries: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "tier": self.tier,
            "groups": len(self.groups),
            "duplicates": sum(len(g.points) - 1 for g in self.groups),
            "points": self.points,
            "unhashed": self.unhashed,
            "queries": self.queries,
            "seconds": round(self.seconds, 3),
        }


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        root = item
        while (up := self.parent.get(root, root)) != root:
            root = up
        while item != root:  # path compression
            self.parent[item], item = root, self.parent.get(item, item)
        return root

    def union(self, a: str, b: str) -> None:
        self.parent.setdefault(a, a)
        self.parent.setdefault(b, b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[str]]:
        members: dict[str, list[str]] = {}
        for item in list(self.parent):
            members.setdefault(self.find(item), []).append(item)
        return [sorted(m) for m in members.values() if len(m) > 1]


def _age(payload: dict[str, Any]) -> float:
    """Seconds since the epoch the picture dates from: EXIF `taken`, else mtime; unknown = new."""
    taken = payload.get("taken")
    if isinstance(taken, str):
        try:
            return datetime.fromisoformat(taken.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    mtime = payload.get("mtime")
    return float(mtime) if isinstance(mtime, int | float) else float("inf")


def _pixels(payload: dict[str, Any]) -> int:
    return int(payload.get("width") or 0) * int(payload.get("height") or 0)


def choose_keeper(points: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(id, reason): the largest pixel count, then the oldest, then the shortest path."""

    def key(pid: str) -> tuple:
        payload = points[pid]
        return (-_pixels(payload), _age(payload), len(str(payload.get("source", ""))), pid)

    ranked = sorted(points, key=key)
    best, runner_up = points[ranked[0]], points[ranked[1]]
    if _pixels(best) > _pixels(runner_up):
        reason = f"largest ({best.get('width')}x{best.get('height')} px)"
    elif _age(best) < _age(runner_up):
        reason = "oldest" + (f" (taken {best['taken']})" if best.get("taken") else " (file mtime)")
    elif len(str(best.get("source", ""))) < len(str(runner_up.get("source", ""))):
        reason = "shortest path"
    else:
        reason = "first by id (otherwise equal)"
    return ranked[0], reason


def _member(pid: str, payload: dict[str, Any], keeper: dict[str, Any]) -> dict[str, Any]:
    record = {"id": pid, **{k: payload.get(k) for k in FIELDS if k != "sha256"}}
    a, b = payload.get(PHASH_VECTOR), keeper.get(PHASH_VECTOR)
    record["distance"] = hamming(from_hex(a), from_hex(b)) if a and b else None
    return record


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _and(base: models.Filter | None, condition: models.Condition) -> models.Filter:
    return models.Filter(must=[condition, *([base] if base is not None else [])])


def _neighbour_pairs(
    store: VectorStore,
    collection: str,
    queries: list[tuple[str, list[float], models.Filter | None]],
    using: str,
    threshold: float,
    options: DuplicateOptions,
    report: DuplicateReport,
) -> Iterable[tuple[str, str, float]]:
    """(a, b, score) for every pair a Qdrant search finds above the threshold, each pair once."""
    for batch in _batches(queries, options.batch_size):
        requests = [
            SearchRequest(
                plan=Nearest(vector, using=using),
                limit=options.neighbours + 1,
                threshold=threshold,
                filter=flt,
            )
            for _, vector, flt in batch
        ]
        results = store.search_batch(collection, requests, fields=[], exact=using == PHASH_VECTOR)
        report.queries += len(requests)
        for (pid, _, _), hits in zip(batch, results, strict=True):
            for hit in hits:
                if hit.id != pid and pid < hit.id:
                    yield pid, hit.id, hit.score


def _clip_vectors(store: VectorStore, collection: str, ids: set[str]) -> dict[str, np.ndarray]:
    vectors: dict[str, np.ndarray] = {}
    for chunk in _batches(sorted(ids), 256):
        for point in store.retrieve(collection, chunk, with_vectors=True):
            if CLIP_VECTOR in point.vectors:
                v = np.asarray(point.vectors[CLIP_VECTOR], dtype=np.float32)
                vectors[point.id] = v / (np.linalg.norm(v) or 1.0)
    return vectors


def find_duplicates(
    store: VectorStore, collection: str, options: DuplicateOptions
) -> DuplicateReport:
    options = options.validated()
    started = time.perf_counter()
    info = store.get_collection(collection)
    if info is None:
        raise CollectionNotFound(collection)
    report = DuplicateReport(collection=collection, tier=options.tier)
    payloads = {p.id: p.payload for p in store.scroll(collection, FIELDS, options.filter)}
    report.points = len(payloads)
    links = _UnionFind()
    if options.tier == "exact":
        first: dict[str, str] = {}
        for pid, payload in payloads.items():
            digest = payload.get("sha256")
            if digest:
                links.union(first.setdefault(digest, pid), pid)
    elif options.tier == "near":
        if PHASH_VECTOR not in info.vectors:
            raise Misconfigured(
                f"collection {collection!r} has no perceptual hashes yet; run "
                f"`pixseek duplicates -c {collection} --update-hashes` once"
            )
        queries = []
        for pid, payload in payloads.items():
            if isinstance(payload.get(PHASH_VECTOR), str):
                queries.append((pid, to_vector(from_hex(payload[PHASH_VECTOR])), options.filter))
        report.unhashed = len(payloads) - len(queries)
        threshold = score_for_distance(options.max_distance)
        pairs = list(
            _neighbour_pairs(store, collection, queries, PHASH_VECTOR, threshold, options, report)
        )
        if options.confirm is not None and pairs:
            clip = _clip_vectors(store, collection, {x for a, b, _ in pairs for x in (a, b)})
            pairs = [
                (a, b, s)
                for a, b, s in pairs
                if a in clip and b in clip and float(clip[a] @ clip[b]) >= options.confirm
            ]
        for a, b, _ in pairs:
            links.union(a, b)
    else:
        ids = sorted(payloads)
        clip = _clip_vectors(store, collection, set(ids))
        queries = []
        for pid in ids:
            flt = options.filter
            if options.time_window is not None:
                age = _age(payloads[pid])
                if not payloads[pid].get("taken") or age == float("inf"):
                    continue
                moment = datetime.fromtimestamp(age).astimezone()
                window = timedelta(seconds=options.time_window)
                flt = _and(
                    flt,
                    models.FieldCondition(
                        key="taken",
                        range=models.DatetimeRange(gte=moment - window, lte=moment + window),
                    ),
                )
            if pid in clip:
                queries.append((pid, clip[pid].tolist(), flt))
        for a, b, _ in _neighbour_pairs(
            store, collection, queries, CLIP_VECTOR, options.similarity, options, report
        ):
            links.union(a, b)
    for members in links.groups():
        group_payloads = {pid: payloads[pid] for pid in members if pid in payloads}
        if len(group_payloads) < 2:
            continue
        keep, reason = choose_keeper(group_payloads)
        ordered = [keep] + [pid for pid in members if pid != keep]
        points = [_member(pid, group_payloads[pid], group_payloads[keep]) for pid in ordered]
        report.groups.append(Group(options.tier, points, keep, reason))
    report.groups.sort(key=lambda g: (-len(g.points), str(g.points[0].get("source"))))
    report.seconds = time.perf_counter() - started
    return report
