"""Evaluation queries: the JSONL format, builders for the shared datasets, COCO preparation.

A query file has one JSON object per line:
    {"id": "q1", "query": "a dog on a beach", "relevant": ["val2017/0001.jpg", ...]}
    {"id": "q2", "query": "a photo of a dog", "label": "dog"}
`relevant` lists file names (the `source` payload, or a unique bare name) or point ids; `label`
makes every image carrying that label relevant.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pixseek.ingest.labels import load_labels

from pixseek.errors import UserError
from pixseek.store import VectorStore
from pixseek.store.base import is_point_id


@dataclass
class EvalQuery:
    id: str
    text: str
    relevant: list[str] = field(default_factory=list)
    label: str | None = None

    def as_json(self) -> dict:
        row: dict = {"id": self.id, "query": self.text}
        if self.label is not None:
            row["label"] = self.label
        else:
            row["relevant"] = self.relevant
        return row


def load_queries(path: Path) -> list[EvalQuery]:
    if not path.is_file():
        raise UserError(f"queries file {path} does not exist")
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        text = row.get("query") or row.get("text") if isinstance(row, dict) else None
        if not text:
            raise UserError(f"{path}:{number}: each line needs a non-empty 'query'")
        if not row.get("relevant") and not row.get("label"):
            raise UserError(f"{path}:{number}: give 'relevant' (file names or ids) or 'label'")
        queries.append(
            EvalQuery(
                id=str(row.get("id", number)),
                text=str(text),
                relevant=[str(r) for r in row.get("relevant") or []],
                label=row.get("label"),
            )
        )
    if not queries:
        raise UserError(f"queries file {path} has no queries")
    return queries


def write_queries(queries: Iterable[EvalQuery], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for query in queries:
            handle.write(json.dumps(query.as_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


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

    def resolve(self, query: EvalQuery) -> set[str]:
        if query.label is not None:
            return set(self.by_label.get(query.label, set()))
        found = set()
        for item in query.relevant:
            if is_point_id(item) and item in self.ids:
                found.add(item)
            elif item in self.by_source:
                found.add(self.by_source[item])
            elif len(self.by_name.get(PurePosixPath(item).name, [])) == 1:
                found.add(self.by_name[PurePosixPath(item).name][0])
        return found


def caption_queries(labels_file: Path, limit: int = 0) -> list[EvalQuery]:
    """COCO captions: each caption is a query whose one relevant image is its own."""
    queries = []
    for filename, entry in load_labels(labels_file).entries.items():
        for index, caption in enumerate(entry.captions):
            stem = PurePosixPath(filename).stem
            queries.append(EvalQuery(f"{stem}-c{index}", caption.strip(), [filename]))
    return queries[:limit] if limit else queries


def label_queries(labels_file: Path, template: str = "a photo of a {}.") -> list[EvalQuery]:
    """Class-name queries (COCO categories, Imagenette classes): every labelled image relevant."""
    counts: Counter[str] = Counter()
    for entry in load_labels(labels_file).entries.values():
        counts.update(entry.labels)
    if not counts:
        raise UserError(f"{labels_file} has no labels to build queries from")
    return [
        EvalQuery(f"label-{label.replace(' ', '_')}", template.format(label), label=label)
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
