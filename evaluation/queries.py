"""Evaluation queries: the JSONL format, builders for the shared datasets, COCO preparation.

A query file has one JSON object per line, and says how its text is read:
    {"id": "q1", "query": "a dog on a beach", "relevant": ["val2017/0001.jpg", ...]}
    {"id": "q2", "q": "2:dog -:grass", "label": "dog"}
`query` is verbatim text: embedded as written (prompt templates still apply unless
`"ensemble": false`). `q` (or `"syntax": "search"` beside `query`) is the `pixseek search` query
language, read exactly as `pixseek search WORDS` reads the same words (weights, `-:` negations,
`./img.jpg` image paths relative to the current directory), so the `text` strategy ranks exactly
as that command does. `relevant` lists file names (the `source` payload, or a unique bare name) or
point ids; `label` makes every image carrying that label relevant. Optional: `"ensemble": false`
(embed without templates), `"meta": {...}` (kept, not read).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pixseek.ingest.labels import load_labels
from pixseek.search.query import QuerySpec, Term, parse_query_text, query_words

from pixseek.errors import InputError, UserError
from pixseek.store import VectorStore
from pixseek.store.base import is_point_id

SYNTAXES = ("verbatim", "search")
KEYS = {"id", "query", "text", "q", "syntax", "ensemble", "relevant", "label", "meta"}


@dataclass
class EvalQuery:
    id: str
    text: str
    relevant: list[str] = field(default_factory=list)
    label: str | None = None
    syntax: str = "verbatim"  # "verbatim" or "search" (the `pixseek search` language)
    ensemble: bool | None = None  # None: the run's setting

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id}
        row["q" if self.syntax == "search" else "query"] = self.text
        if self.ensemble is not None:
            row["ensemble"] = self.ensemble
        if self.label is not None:
            row["label"] = self.label
        else:
            row["relevant"] = self.relevant
        return row

    def uses_ensemble(self, run_default: bool) -> bool:
        return run_default if self.ensemble is None else self.ensemble

    def search_spec(self, ensemble: bool) -> QuerySpec:
        """The query the `text` strategy runs: what `pixseek search` builds for it (`ensemble`
        is the final choice, see `runner.ensemble_for`)."""
        if self.syntax == "search":
            return parse_query_text(self.text, ensemble)
        return QuerySpec(terms=(Term("text", self.text),), ensemble=ensemble)

    @property
    def prompt(self) -> str:
        """The text-to-image prompt: the words as `pixseek search WORDS --generate` joins them."""
        return " ".join(query_words(self.text)) if self.syntax == "search" else self.text

    @property
    def is_plain_text(self) -> bool:
        """True when the query is one text term of weight 1 (verbatim, or search syntax)."""
        if self.syntax != "search":
            return True
        terms = parse_query_text(self.text).terms
        return (
            len(terms) == 1
            and isinstance(terms[0], Term)
            and terms[0].kind == "text"
            and (terms[0].weight == 1.0)
        )


def _query_row(row: Any, where: str, number: int) -> EvalQuery:
    if not isinstance(row, dict):
        raise InputError(f"{where}: each line must be a JSON object")
    unknown = sorted(set(row) - KEYS)
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(KEYS))}"
        )
    given = [key for key in ("query", "text", "q") if row.get(key) not in (None, "")]
    if len(given) != 1:
        raise InputError(
            f"{where}: give exactly one of 'query' (verbatim text) or 'q' (search syntax)"
            + (f"; got {', '.join(given)}" if given else "")
        )
    text = row[given[0]]
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: the query text must be a non-empty string")
    syntax = row.get("syntax", "search" if given[0] == "q" else "verbatim")
    if syntax not in SYNTAXES or (given[0] == "q" and syntax != "search"):
        raise InputError(
            f"{where}: 'syntax' must be 'verbatim' or 'search' ('q' is always search syntax)"
        )
    ensemble = row.get("ensemble")
    if ensemble is not None and not isinstance(ensemble, bool):
        raise InputError(f"{where}: 'ensemble' must be true or false")
    relevant, label = row.get("relevant"), row.get("label")
    if not relevant and not label:
        raise InputError(f"{where}: give 'relevant' (file names or ids) or 'label'")
    if relevant and label:
        raise InputError(f"{where}: give 'relevant' or 'label', not both")
    if relevant is not None and not isinstance(relevant, list):
        raise InputError(f"{where}: 'relevant' must be a list of file names or point ids")
    query = EvalQuery(
        id=str(row.get("id", number)),
        text=text.strip(),
        relevant=[str(r) for r in relevant or []],
        label=str(label) if label else None,
        syntax=syntax,
        ensemble=ensemble,
    )
    if syntax == "search":
        try:
            query.search_spec(True)
        except UserError as exc:
            raise InputError(f"{where}: {exc}") from None
    return query


def load_queries(path: Path) -> list[EvalQuery]:
    if not path.is_file():
        raise InputError(f"queries file {path} does not exist")
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        queries.append(_query_row(row, f"{path}:{number}", number))
    if not queries:
        raise InputError(f"queries file {path} has no queries")
    ids = Counter(q.id for q in queries)
    repeated = [i for i, c in ids.items() if c > 1]
    if repeated:
        raise InputError(f"queries file {path} repeats the id {repeated[0]!r}; ids must be unique")
    return queries


def templated_by(text: str, templates: Sequence[str]) -> str | None:
    """The prompt template `text` is already an instance of ("a photo of a tench." for
    "a photo of a {}."), or None. Ensembling such a text would wrap a template in a template."""
    for template in templates:
        if "{}" not in template:
            continue
        before, after = template.split("{}", 1)
        pattern = re.escape(before) + r"(.+)" + re.escape(after)
        if re.fullmatch(pattern, text.strip(), flags=re.IGNORECASE | re.DOTALL):
            return template
    return None


def write_queries(queries: Iterable[EvalQuery], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for query in queries:
            handle.write(json.dumps(query.as_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


@dataclass(frozen=True)
class Relevance:
    """A query's relevant items in one collection: those present, and those it lists but the
    collection lacks (or cannot tell apart: a bare name shared by several points)."""

    present: set[str]
    missing: list[str] = field(default_factory=list)

    @property
    def listed(self) -> int:
        """The denominator of recall and AP when missing items count (the default)."""
        return len(self.present) + len(self.missing)


class RelevanceIndex:
    """Maps a query's `relevant` / `label` to point ids of one collection (one scroll)."""

    def __init__(self, store: VectorStore, collection: str) -> None:
        self.by_source: dict[str, str] = {}
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.by_label: dict[str, set[str]] = defaultdict(set)
        self.ids: set[str] = set()
        for point in store.scroll(collection, fields=["source", "labels"]):
            source = str(point.payload.get("source", ""))
            self.ids.add(point.id)
            self.by_source[source] = point.id
            self.by_name[PurePosixPath(source).name].append(point.id)
            for label in point.payload.get("labels") or []:
                self.by_label[label].add(point.id)

    def resolve(self, query: EvalQuery) -> Relevance:
        if query.label is not None:  # every labelled image is present by construction
            return Relevance(set(self.by_label.get(query.label, set())))
        found: set[str] = set()
        missing: list[str] = []
        for item in dict.fromkeys(query.relevant):
            if is_point_id(item) and item in self.ids:
                point = item
            elif item in self.by_source:
                point = self.by_source[item]
            elif len(self.by_name.get(PurePosixPath(item).name, [])) == 1:
                point = self.by_name[PurePosixPath(item).name][0]
            else:
                missing.append(item)
                continue
            if point in found:  # two spellings of one point (its id and its file name)
                continue
            found.add(point)
        return Relevance(found, missing)


def caption_queries(labels_file: Path, limit: int = 0) -> list[EvalQuery]:
    """COCO captions: each caption is a query whose one relevant image is its own."""
    queries = []
    for filename, entry in load_labels(labels_file).entries.items():
        for index, caption in enumerate(entry.captions):
            stem = PurePosixPath(filename).stem
            queries.append(EvalQuery(f"{stem}-c{index}", caption.strip(), [filename]))
    return queries[:limit] if limit else queries


def label_queries(labels_file: Path, template: str | None = None) -> list[EvalQuery]:
    """Class-name queries (COCO categories, Imagenette classes): every labelled image relevant.

    The query is the bare label, so the run's prompt ensembling wraps it once. With a
    `template` the query is that template filled in, marked `"ensemble": false` so that it is
    embedded as written and never wrapped in a second template.
    """
    counts: Counter[str] = Counter()
    for entry in load_labels(labels_file).entries.values():
        counts.update(entry.labels)
    if not counts:
        raise UserError(f"{labels_file} has no labels to build queries from")
    if template is not None and "{}" not in template:
        raise InputError(f"--template {template!r} has no {{}} for the label")
    return [
        EvalQuery(
            f"label-{label.replace(' ', '_')}",
            label if template is None else template.replace("{}", label),
            label=label,
            ensemble=None if template is None else False,
        )
        for label in sorted(counts)
    ]


def prepare_coco(
    instances_file: Path,
    captions_file: Path | None,
    max_objects: int,
    prefix: str = "",
) -> tuple[list[dict], list[EvalQuery]]:
    """COCO-style annotations -> (labels rows, caption queries) for images with <= N objects.

    Few-object images are where a single generated picture can plausibly depict the query,
    which is the setting the generative-retrieval proposal evaluated on.
    """
    try:
        instances = json.loads(instances_file.read_text())
        captions = json.loads(captions_file.read_text()) if captions_file else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read COCO annotations: {exc}") from None
    if "annotations" not in instances or "images" not in instances:
        raise UserError(f"{instances_file} is not a COCO instances file (no images/annotations)")
    names = {c["id"]: c["name"] for c in instances.get("categories", [])}
    objects: dict[int, list[str]] = defaultdict(list)
    for annotation in instances["annotations"]:
        objects[annotation["image_id"]].append(names.get(annotation["category_id"], "?"))
    texts: dict[int, list[str]] = defaultdict(list)
    for annotation in captions.get("annotations", []):
        texts[annotation["image_id"]].append(annotation["caption"].strip())
    rows, queries = [], []
    for image in sorted(instances["images"], key=lambda i: i["id"]):
        found = objects.get(image["id"], [])
        if not found or len(found) > max_objects:
            continue
        filename = prefix + image["file_name"]
        rows.append(
            {
                "filename": filename,
                "image_id": image["id"],
                "labels": sorted(set(found)),
                "n_objects": len(found),
                "captions": texts.get(image["id"], []),
            }
        )
        for index, caption in enumerate(texts.get(image["id"], [])):
            queries.append(EvalQuery(f"{image['id']}-c{index}", caption, [filename]))
    return rows, queries
