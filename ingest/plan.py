"""Planning an ingest run: what to do with every discovered file, decided without reading images.

The data model (payload schema 2): one point per file location (root + source), so every copy of
an image keeps its own path, labels, captions and meta, and a re-ingest of one root never touches
what another root contributed. Identical content is still embedded once: a later copy reuses the
stored vectors of the first (see `pipeline.py`). Point ids are derived from the content hash and
the location, so a re-run finds its points again and `repair` can rebuild them.

`plan` is pure (no store writes, no image reads): it returns typed work items that any executor
(this process, or distributed workers) can carry out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pixseek.ingest.labels import LabelIndex, folder_label
from pixseek.ingest.sources import ImageFile, Skipped
from pixseek.ingest.state import CollectionState, StoredEntry

# Fixed namespace: the same bytes at the same location get the same point id on every machine.
POINT_NAMESPACE = uuid.UUID("6b3c1f0e-8f3a-4c2e-9d51-7a0c2b9e4f11")
# Payload fields that describe a location (everything else on a point describes the picture).
LOCATION_FIELDS = frozenset(
    {"root", "source", "bytes", "mtime", "labels", "label_keys", "captions", "meta"}
)
# A sidecar that labels fewer files than this share is probably keyed differently.
LABEL_MATCH_WARNING = 0.5


def point_id_for(sha256_hex: str, root: str, source: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{sha256_hex}\0{root}\0{source}"))


def label_keys(labels: list[str]) -> list[str]:
    """The case-folded labels that `label=` filters match (the displayed labels keep their case)."""
    return sorted({label.casefold() for label in labels})


def with_label_keys(labels: dict[str, Any]) -> dict[str, Any]:
    return {**labels, "label_keys": label_keys(labels.get("labels") or [])}


@dataclass(frozen=True)
class Keep:
    """The file is unchanged: keep its point; `payload` is set when its labels changed."""

    item: ImageFile
    point_id: str
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class Fetch:
    """New or changed file: read and hash it, then embed it or reuse identical content's vectors.

    `replaces` are the ids stored for this location before: deleted once the new point is stored.
    """

    item: ImageFile
    labels: dict[str, Any]
    replaces: frozenset[str] = frozenset()

    def payload(self, sha256_hex: str) -> dict[str, Any]:
        return {
            "root": self.item.root,
            "source": self.item.source,
            "bytes": self.item.size,
            "mtime": self.item.mtime,
            "sha256": sha256_hex,
            **self.labels,
        }


@dataclass(frozen=True)
class Reject:
    """Discovery could not use this path; reported under `failed`."""

    source: str
    reason: str


Work = Keep | Fetch | Reject


@dataclass
class Plan:
    work: list[Work] = field(default_factory=list)
    seen_keys: set[tuple[str, str]] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    @property
    def kept_ids(self) -> set[str]:
        return {w.point_id for w in self.work if isinstance(w, Keep)}


def plan(
    state: CollectionState,
    items: list[ImageFile | Skipped],
    labels: LabelIndex | None = None,
    labels_from_folders: bool = False,
) -> Plan:
    result = Plan()
    files = 0
    matched = 0
    for item in items:
        if isinstance(item, Skipped):
            result.work.append(Reject(item.source, item.reason))
            continue
        if item.key in result.seen_keys:  # the same path given twice
            continue
        result.seen_keys.add(item.key)
        files += 1
        entry_labels, hit = _labels_for(item, labels, labels_from_folders)
        matched += hit
        result.work.append(_plan_one(state.by_key.get(item.key, []), item, entry_labels))
    if labels is not None:
        result.warnings.extend(_label_warnings(labels, files, matched))
    return result


def _labels_for(
    item: ImageFile, labels: LabelIndex | None, from_folders: bool
) -> tuple[dict[str, Any] | None, bool]:
    """The label payload this location brings (None: leave stored labels alone) and whether the
    sidecar had an entry for it."""
    if labels is not None:
        entry = labels.lookup(item.source)
        payload = entry.payload() if entry else {"labels": []}
        if from_folders and not payload["labels"]:
            payload["labels"] = folder_label(item.source)
        return with_label_keys(payload), entry is not None
    if from_folders:
        return with_label_keys({"labels": folder_label(item.source)}), False
    return None, False


def _plan_one(stored: list[StoredEntry], item: ImageFile, labels: dict[str, Any] | None) -> Work:
    current = next((e for e in stored if e.unchanged(item.size, item.mtime)), None)
    if current is not None:
        if labels is None or labels == current.labels:
            return Keep(item, current.id)
        cleared = {k: [] if k == "captions" else {} for k in current.labels if k not in labels}
        return Keep(item, current.id, {**cleared, **labels})
    if labels is None:  # a changed file keeps the labels its location had
        labels = with_label_keys(stored[0].labels) if stored else with_label_keys({"labels": []})
    return Fetch(item, labels, frozenset(e.id for e in stored))


def _label_warnings(labels: LabelIndex, files: int, matched: int) -> list[str]:
    if not files or matched >= files * LABEL_MATCH_WARNING:
        return []
    example = labels.example_unused()
    hint = f"; e.g. key {example!r} matched no file" if example else ""
    return [
        f"labels file matched {matched} of {files} files ({matched / files:.0%}){hint}; keys are "
        "matched against paths relative to the ingested folder, then path suffixes, then names"
    ]
