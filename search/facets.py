"""Facets: how many points of a collection (or of the current filter) have each value.

Labels, formats and cameras are counted by Qdrant's facet API on their keyword indexes; years
are counted from the `taken` datetime index (EXIF date), one range count per year between the
earliest and the latest picture, as Qdrant facets only keyword, integer and bool fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models

from pixseek.store.base import Browse, VectorStore

FACET_FIELDS = {"labels": "labels", "formats": "format", "cameras": "camera"}
FACET_LIMIT = 100
MAX_YEARS = 200


@dataclass
class Facets:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)  # facets cut at FACET_LIMIT values

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"facets": self.counts}
        if self.truncated:
            out["facets_truncated"] = self.truncated
        return out


def collection_facets(
    store: VectorStore,
    collection: str,
    filter: models.Filter | None = None,
    limit: int = FACET_LIMIT,
) -> Facets:
    facets = Facets()
    for name, key in FACET_FIELDS.items():
        hits = store.facet(collection, key, limit=limit, filter=filter)
        facets.counts[name] = {str(h.value): h.count for h in hits}
        if len(hits) >= limit:
            facets.truncated.append(name)
    facets.counts["years"] = _years(store, collection, filter)
    return facets


def _years(store: VectorStore, collection: str, filter: models.Filter | None) -> dict[str, int]:
    ends = [
        store.browse(
            collection, Browse(limit=1, filter=filter, newest_first=newest, order_by="taken")
        )
        for newest in (False, True)
    ]
    if not ends[0] or not ends[1]:
        return {}
    first, last = (int(str(e[0].payload["taken"])[:4]) for e in ends)
    counts: dict[str, int] = {}
    for year in range(max(first, last - MAX_YEARS + 1), last + 1):
        span = models.FieldCondition(
            key="taken",
            range=models.DatetimeRange(
                gte=f"{year:04d}-01-01T00:00:00Z", lt=f"{year + 1:04d}-01-01T00:00:00Z"
            ),
        )
        count = store.count(collection, models.Filter(must=[span, *([filter] if filter else [])]))
        if count:
            counts[str(year)] = count
    return counts
