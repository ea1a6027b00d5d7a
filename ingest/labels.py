"""Labels and captions from a sidecar file (CSV or JSONL) or from folder names.

CSV: a header with a file column (`filename`, `file`, `path` or `image`) and a `label` or
`labels` column (several labels separated by `|` or `;`); other columns go to `meta`.
JSONL: one object per line with `filename` (or `file`/`path`), and optionally `labels` (a list,
a string or null), `label`, `captions`; other keys go to `meta`.
Matching: the path relative to the ingested root, then the longest matching path suffix
(so labels keyed `val/x/1.jpg` still match when `val/` itself is ingested), then the bare name.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pixseek.errors import UserError

FILE_KEYS = ("filename", "file", "path", "image")


@dataclass
class LabelEntry:
    labels: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"labels": self.labels}
        if self.captions:
            out["captions"] = self.captions
        if self.meta:
            out["meta"] = self.meta
        return out


class LabelIndex:
    def __init__(self, entries: dict[str, LabelEntry]) -> None:
        self.entries = {_norm(k): v for k, v in entries.items()}
        by_name: dict[str, list[str]] = {}
        for key in self.entries:
            by_name.setdefault(PurePosixPath(key).name, []).append(key)
        self._by_name = by_name
        self.used: set[str] = set()  # keys that matched a file in this run

    def example_unused(self) -> str | None:
        """A key that matched no file (shown in the warning when few files got labels)."""
        return next((k for k in self.entries if k not in self.used), None)

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, source: str) -> LabelEntry | None:
        key = self._match(source)
        if key is None:
            return None
        self.used.add(key)
        return self.entries[key]

    def _match(self, source: str) -> str | None:
        source = _norm(source)
        if source in self.entries:
            return source
        candidates = self._by_name.get(PurePosixPath(source).name, [])
        suffix_hits = [
            k for k in candidates if k.endswith("/" + source) or source.endswith("/" + k)
        ]
        if len(suffix_hits) == 1:
            return suffix_hits[0]
        if len(candidates) == 1 and not suffix_hits:
            return candidates[0]
        return None


def _norm(path: str) -> str:
    return path.replace("\\", "/").removeprefix("./")


def _split_labels(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    for separator in ("|", ";"):
        if separator in text:
            return [part.strip() for part in text.split(separator) if part.strip()]
    return [text.strip()] if text.strip() else []


def _file_key(row: dict[str, Any], where: str) -> str:
    for key in FILE_KEYS:
        if row.get(key):
            return str(row[key])
    raise UserError(
        f"{where}: no file name; each row needs one of the columns {', '.join(FILE_KEYS)}"
    )


def load_labels(path: Path) -> LabelIndex:
    if not path.is_file():
        raise UserError(f"labels file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return LabelIndex(_read_csv(path))
    if suffix in {".jsonl", ".ndjson"}:
        return LabelIndex(_read_jsonl(path))
    raise UserError(f"labels file {path} has an unknown format; use .csv or .jsonl")


def _read_csv(path: Path) -> dict[str, LabelEntry]:
    entries: dict[str, LabelEntry] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        if not columns & set(FILE_KEYS):
            raise UserError(f"{path}: CSV header needs a file column ({', '.join(FILE_KEYS)})")
        for line, row in enumerate(reader, start=2):
            key = _file_key(row, f"{path}:{line}")
            labels = _split_labels(row.get("labels") or row.get("label"))
            meta = {
                k: v
                for k, v in row.items()
                if k and k not in FILE_KEYS and k not in {"label", "labels"} and v not in (None, "")
            }
            entries[key] = LabelEntry(labels=labels, meta=meta)
    return entries


def _read_jsonl(path: Path) -> dict[str, LabelEntry]:
    entries: dict[str, LabelEntry] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{line_no}: each line must be a JSON object")
            key = _file_key(row, f"{path}:{line_no}")
            labels = _split_labels(row.get("labels", row.get("label")))
            captions = [str(c) for c in row.get("captions") or []]
            skip = set(FILE_KEYS) | {"labels", "label", "captions"}
            meta = {k: v for k, v in row.items() if k not in skip and v is not None}
            entries[key] = LabelEntry(labels=labels, captions=captions, meta=meta)
    return entries


def folder_label(source: str) -> list[str]:
    """The parent folder's name as the label (`dogs/1.jpg` -> ["dogs"]); none at the root."""
    parent = PurePosixPath(source.replace("\\", "/")).parent.name
    return [parent] if parent else []
