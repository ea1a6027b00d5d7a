"""What bench/distributed_imagenette.py checks in each store it filled, and across the runs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from bench.distributed_ingest import IMAGENETTE

COLLECTION = "imagenette"


def truth() -> dict[str, str]:
    """labels.csv: source relative to val/ -> wnid."""
    with (IMAGENETTE / "labels.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "val"]
    return {r["filename"].removeprefix("val/"): r["wnid"] for r in rows}


Points = list[tuple[str, dict, dict]]  # id, payload, vectors


def stored_points(data_dir: Path, qdrant_local: Path | None) -> Points:
    if qdrant_local is not None:
        from pixseek.store.server import ServerStore

        store: Any = ServerStore(f"local:{qdrant_local}")
    else:
        from pixseek.store.edge import EdgeStore

        store = EdgeStore(data_dir / "collections")
    try:
        ids = [p.id for p in store.scroll(COLLECTION, fields=[])]
        points = store.retrieve(COLLECTION, ids, with_vectors=True)
        return [(p.id, dict(p.payload), dict(p.vectors)) for p in points]
    finally:
        store.close()


def dense(vectors: dict) -> dict[str, Any]:
    import numpy as np

    from pixseek.store.base import SparseVector

    return {
        name: np.asarray(v, dtype=np.float32)
        for name, v in vectors.items()
        if not isinstance(v, SparseVector)
    }


def good_vectors(vectors: dict) -> bool:
    """Every dense vector finite and not all zero, and at least one of them."""
    import numpy as np

    found = dense(vectors)
    return bool(found) and all(np.isfinite(v).all() and np.abs(v).sum() > 0 for v in found.values())


def label_ok(payload: dict, want: dict[str, str]) -> bool:
    """labels == [the class folder] == labels.csv's wnid for the file."""
    wnid = want.get(payload["source"])
    return payload.get("labels") == [wnid] and payload["source"].split("/")[0] == wnid


def check_points(points: Points, want: dict[str, str]) -> dict[str, Any]:
    pairs = [(p["root"], p["source"]) for _, p, _ in points]
    wrong = {p["source"] for _, p, _ in points if not label_ok(p, want)}
    sources = {p["source"] for _, p, _ in points}
    return {
        "points": len(points),
        "distinct_ids": len({pid for pid, _, _ in points}),
        "vector_names": sorted({name for _, _, v in points for name in v}),
        "bad_vectors": sum(not good_vectors(v) for _, _, v in points),
        "duplicate_root_source": len(pairs) - len(set(pairs)),
        "roots": sorted({root for root, _ in pairs}),
        "wrong_labels": len(wrong),
        "wrong_labels_first": sorted(wrong)[:5],
        "missing_files": len(set(want) - sources),
        "extra_files": len(sources - set(want)),
    }


def summary_counts(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("added", "updated", "skipped", "duplicates", "replaced", "pruned", "seconds")
    counts = {key: summary.get(key) for key in (*keys, "images_per_second")}
    counts["seconds"] = round(float(counts["seconds"] or 0), 2)
    return {**counts, "failed": len(summary.get("failed", []))}


def failures(record: dict[str, Any], total: int) -> list[str]:
    s, p = record["summary"], record["stored"]
    checks = {
        "exit code 0": record["exit_code"] == 0,
        f"added == {total}": s.get("added") == total,
        "0 failed, updated, skipped, duplicates": not any(
            s.get(key) for key in ("failed", "updated", "skipped", "duplicates")
        ),
        f"points == {total}": p.get("points") == total,
        f"distinct ids == {total}": p.get("distinct_ids") == total,
        "no duplicate (root, source)": p.get("duplicate_root_source") == 0,
        "one root": len(p.get("roots", [])) == 1,
        "labels == [wnid]": p.get("wrong_labels") == 0,
        "every point has finite non-zero dense vectors": p.get("bad_vectors") == 0,
        "labels.csv's files stored, no other": p.get("missing_files") == p.get("extra_files") == 0,
    }
    kill = record.get("kill")
    if kill is not None:
        checks["killed shard not finished by the victim"] = not kill["victim_finished_it"]
        checks["killed shard redelivered (delivery 2) to the survivor"] = kill["redelivered"]
    return [name for name, ok in checks.items() if not ok]


def across(stores: list[Points]) -> dict[str, Any]:
    """Ids are deterministic: the three runs store the same ids; the killed run's vectors are
    the undisturbed run's (the redone shard embedded the same images the same way)."""
    import numpy as np

    ids = [{pid for pid, _, _ in points} for points in stores]
    first = {pid: dense(v) for pid, _, v in stores[0]}
    diff = 0.0
    for pid, _, vectors in stores[-1]:
        for name, vector in dense(vectors).items():
            other = first.get(pid, {}).get(name)
            gap = np.inf if other is None else float(np.abs(other - vector).max())
            diff = max(diff, gap)
    result: dict[str, Any] = {
        "same_ids_in_every_run": len(stores) == 3 and all(i == ids[0] for i in ids),
        "max_abs_vector_diff_c_vs_a": diff,
    }
    result["failed_checks"] = [
        name
        for name, ok in {
            "same ids in (a), (b), (c)": result["same_ids_in_every_run"],
            "(c) vectors == (a) vectors (max abs diff <= 1e-5)": diff <= 1e-5,
        }.items()
        if not ok
    ]
    return result
