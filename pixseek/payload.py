"""The payload-field catalogue: every field ingest writes, its type, index and filter name.

One table instead of three lists: the store builds its payload indexes from it, and the
`--where` language reads field types (and the names users may filter on) from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["keyword", "text", "integer", "epoch", "datetime"]
IndexKind = Literal["keyword", "integer", "float", "datetime", "text"]


@dataclass(frozen=True)
class PayloadField:
    name: str  # the payload key
    kind: Kind  # how filter values are read: text, integer, epoch seconds, RFC 3339 datetime
    index: IndexKind | None  # the Qdrant payload index built before any upload, if any
    alias: str | None = None  # the singular name users write in filters (`label=dog`)
    filterable: bool = True  # users may name it in `--where` (internal fields are not)


FIELDS: tuple[PayloadField, ...] = (
    PayloadField("labels", "keyword", "keyword", alias="label"),
    PayloadField("label_keys", "keyword", "keyword", filterable=False),  # case-folded labels
    PayloadField("captions", "text", None, alias="caption"),
    PayloadField("source", "text", "keyword"),
    PayloadField("root", "text", "keyword"),
    PayloadField("format", "text", "keyword"),
    PayloadField("camera", "text", "keyword"),
    PayloadField("sha256", "text", None),
    PayloadField("width", "integer", "integer"),
    PayloadField("height", "integer", "integer"),
    PayloadField("bytes", "integer", "integer"),
    PayloadField("mtime", "epoch", "float"),  # range index: browse newest first
    PayloadField("taken", "datetime", "datetime"),
    # Text in the image and the keyword index (ingest/ocr.py, pixseek/keywords.py); `~` on a
    # full-text-indexed field matches whole words, case-insensitively.
    PayloadField("ocr", "text", "text"),
    PayloadField("keywords", "text", "text", alias="text"),
    PayloadField("ocr_engine", "keyword", "keyword", filterable=False),
)

BY_NAME = {field.name: field for field in FIELDS}
PAYLOAD_INDEXES: dict[str, IndexKind] = {f.name: f.index for f in FIELDS if f.index is not None}
ALIASES = {f.alias: f.name for f in FIELDS if f.alias}


def names_of(kind: Kind) -> frozenset[str]:
    return frozenset(f.name for f in FIELDS if f.kind == kind)


def filterable_names() -> list[str]:
    """What users may write in a filter: aliases where they exist, else the payload key."""
    return [f.alias or f.name for f in FIELDS if f.filterable]
