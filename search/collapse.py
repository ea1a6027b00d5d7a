"""`--collapse near`: one search result per near-duplicate group, with the group's size.

The ranked hits are walked best first; a hit whose perceptual hash is within the near tier's
threshold of a result already kept joins that result's group instead of becoming a result.
The window of hits is widened until `offset + limit` groups are formed (or the collection runs
out). Each result then gets its group's size in the collection, counted by one batched, exact
Qdrant query on the `phash` vector (with the search's filter), so the number does not depend
on how deep the window went.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pixseek.search.duplicates import NEAR_MAX_DISTANCE

from pixseek.errors import InputError
from pixseek.phash import (
    PHASH_VECTOR,
    from_hex,
    hamming,
    score_for_distance,
    to_vector,
)
from pixseek.store import CollectionInfo, Hit, Nearest, SearchRequest, VectorStore

if TYPE_CHECKING:
    from qdrant_client import models

COLLAPSE_MODES = ("near",)
MAX_WINDOW = 10_000  # hits looked at to fill one page of groups
GROUP_COUNT_CAP = 1000  # group sizes above this are reported as this


def check_collapse(mode: str | None, info: CollectionInfo) -> None:
    if mode is None:
        return
    if mode not in COLLAPSE_MODES:
        raise InputError(f"unknown collapse mode {mode!r}; use 'near'")
    if PHASH_VECTOR not in info.vectors:
        raise InputError(
            f"collection {info.name!r} has no perceptual hashes to collapse by; run "
            f"`pixseek duplicates -c {info.name} --update-hashes` once"
        )


def _hash(hit: Hit) -> int | None:
    value = hit.payload.get(PHASH_VECTOR)
    return from_hex(value) if isinstance(value, str) else None


def collapse_hits(hits: list[Hit], max_distance: int = NEAR_MAX_DISTANCE) -> list[list[Hit]]:
    """Greedy grouping of ranked hits: each group is led by its best-ranked hit."""
    groups: list[list[Hit]] = []
    leaders: list[tuple[int, int]] = []  # (hash, group index)
    for hit in hits:
        value = _hash(hit)
        target = None
        if value is not None:
            target = next((g for h, g in leaders if hamming(h, value) <= max_distance), None)
        if target is None:
            if value is not None:
                leaders.append((value, len(groups)))
            groups.append([hit])
        else:
            groups[target].append(hit)
    return groups


def collapsed_page(
    fetch: Callable[[int], list[Hit]],
    offset: int,
    limit: int,
    max_distance: int = NEAR_MAX_DISTANCE,
) -> list[Hit]:
    """The page of group leaders; `fetch(n)` returns the top n hits, best first."""
    wanted = offset + limit
    size = min(MAX_WINDOW, max(4 * wanted, 50))
    while True:
        hits = fetch(size)
        groups = collapse_hits(hits, max_distance)
        if len(groups) >= wanted or len(hits) < size or size >= MAX_WINDOW:
            break
        size = min(MAX_WINDOW, size * 2)
    return [group[0] for group in groups[offset:wanted]]


def group_sizes(
    store: VectorStore,
    collection: str,
    hits: list[Hit],
    flt: models.Filter | None,
    max_distance: int = NEAR_MAX_DISTANCE,
) -> list[int]:
    """How many points of the collection (under `flt`) are near duplicates of each hit, itself
    included; 1 for a hit without a hash."""
    hashed = [(i, _hash(hit)) for i, hit in enumerate(hits)]
    hashed = [(i, value) for i, value in hashed if value is not None]
    sizes = [1] * len(hits)
    if not hashed:
        return sizes
    requests = [
        SearchRequest(
            Nearest(to_vector(value), using=PHASH_VECTOR),
            limit=GROUP_COUNT_CAP,
            threshold=score_for_distance(max_distance),
            filter=flt,
        )
        for _, value in hashed
    ]
    results = store.search_batch(collection, requests, fields=[], exact=True)
    for (i, _), found in zip(hashed, results, strict=True):
        sizes[i] = max(1, len(found))
    return sizes
