"""`pixseek collections check / repair / snapshot / restore` for the embedded store.

check: reads every point (pixseek/store/integrity.py). repair: copies every point that can still
be read, with sound vectors, into a freshly built shard that replaces the damaged one, and
rewrites a damaged pixseek.json from the shard's own configuration; what could not be read comes
back by ingesting the collection's recorded roots again (point ids derive from the content and
location, so a re-ingest stores exactly the missing points). snapshot / restore: a tar of the
collection folder, written while this process holds the collection's lock, so it is consistent.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from pixseek.errors import CollectionNotFound, InputError, StoreBusy, StoreCorrupt, first_line
from pixseek.store import integrity

ROOTS_KEY = "roots"  # collection metadata: the folders and archives ingested into it
_PAGE = 256


@dataclass
class RepairReport:
    name: str
    kept: int = 0
    lost: int | None = None  # None: how many were stored is unknown (no clean close recorded)
    roots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lost = "an unknown number of" if self.lost is None else str(self.lost)
        line = f"{self.name}: repaired; {self.kept} points kept, {lost} lost"
        if self.lost != 0 and self.roots:
            line += "; restore them with `pixseek ingest " + " ".join(self.roots)
            line += f" --collection {self.name}`"
        return line


def _scroll_page(shard: Any, offset: Any) -> Any:
    return shard.scroll(
        qe.ScrollRequest(offset=offset, limit=_PAGE, with_payload=True, with_vector=True)
    )


def check(store: Any, name: str) -> integrity.CheckReport:
    from pixseek.store.edge import META_FILE

    directory = store._dir(name)
    if not (directory / META_FILE).is_file():
        raise CollectionNotFound(name)
    try:
        meta = store._read_meta(name) or {}
    except StoreCorrupt as exc:
        report = integrity.CheckReport(name)
        report.problems.append(exc.message)
        return report
    report = integrity.full_check(name, lambda: store._shard(name), _scroll_page)
    report.recorded = (meta.get(integrity.SEAL_KEY) or {}).get("points")
    return report


def _load_raw(shard_dir: Path, name: str) -> Any:
    try:
        return qe.EdgeShard.load(str(shard_dir))
    except Exception as exc:
        if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
            raise StoreBusy(
                f"collection {name!r} is open in another pixseek process; stop it first"
            ) from None
        raise


def _readable_points(shard_dir: Path, name: str, notes: list[str]) -> list[Any]:
    """Every point that can still be read and whose dense vectors are sound."""
    kept: list[Any] = []
    try:
        shard = _load_raw(shard_dir, name)
    except StoreBusy:
        raise
    except Exception as exc:
        notes.append(f"the shard could not be opened ({first_line(exc)})")
        return kept
    try:
        offset = None
        while True:
            records, offset = _scroll_page(shard, offset)
            for record in records:
                probe = integrity.CheckReport(name)
                integrity._check_record(record, probe)
                if probe.ok:
                    kept.append(record)
            if offset is None:
                break
    except Exception as exc:
        notes.append(f"reading stopped after {len(kept)} points ({first_line(exc)})")
    finally:
        shard.close()
    return kept


def _edge_config(shard_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads((shard_dir / "edge_config.json").read_text())
    except (OSError, ValueError):
        return {
            "vectors": {
                k: {"size": int(v), "distance": "Cosine"} for k, v in meta["vectors"].items()
            },
            "sparse_vectors": {s: {"modifier": "idf"} for s in meta.get("sparse", [])},
        }


def repair(store: Any, name: str) -> RepairReport:
    from pixseek.store.edge import META_FILE, PAYLOAD_INDEXES, close_shards, index_schema
    from pixseek.store.options import StorageOptions

    directory = store._dir(name)
    shard_dir = directory / "shard"
    if not directory.is_dir() or not (directory / META_FILE).exists():
        raise CollectionNotFound(name)
    report = RepairReport(name)
    try:
        meta = store._read_meta(name) or {}
    except StoreCorrupt:
        meta = {}
    if "vectors" not in meta:
        config = json.loads((shard_dir / "edge_config.json").read_text())
        meta = {
            "vectors": {k: v["size"] for k, v in config.get("vectors", {}).items()},
            "sparse": sorted(config.get("sparse_vectors", {})),
            "metadata": {},
        }
        report.notes.append(
            f"{META_FILE} was damaged: rewritten from the shard's configuration (the model "
            "names are checked and recorded again by the next ingest)"
        )
    close_shards(directory)
    recorded = (meta.get(integrity.SEAL_KEY) or {}).get("points")
    if recorded is None:
        recorded = meta.get(integrity.LAST_POINTS_KEY)
    points = _readable_points(shard_dir, name, report.notes)
    config = _edge_config(shard_dir, meta)
    building, retired = directory / "shard.repair", directory / "shard.damaged"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    (building / "edge_config.json").write_text(json.dumps(config))
    new = qe.EdgeShard.load(str(building))
    storage = StorageOptions.from_dict(meta.get("storage"))
    for field_name, kind in PAYLOAD_INDEXES.items():
        new.update(qe.UpdateOperation.create_field_index(field_name, index_schema(kind, storage)))
    for start in range(0, len(points), _PAGE):
        batch = [
            qe.Point(id=r.id, vector=r.vector, payload=r.payload or {})
            for r in points[start : start + _PAGE]
        ]
        new.update(qe.UpdateOperation.upsert_points(batch))
    new.flush()
    new.close()
    shutil.rmtree(retired, ignore_errors=True)
    if shard_dir.exists():
        os.replace(shard_dir, retired)
    os.replace(building, shard_dir)
    shutil.rmtree(retired, ignore_errors=True)
    meta.pop(integrity.SEAL_KEY, None)
    meta.pop(integrity.LAST_POINTS_KEY, None)
    meta.pop("index_build", None)  # the new shard has no index yet: `optimize` builds it
    store._write_meta(name, meta)
    report.kept = len(points)
    report.lost = None if recorded is None else max(0, recorded - len(points))
    roots = {str(r.payload.get("root")) for r in points if r.payload and r.payload.get("root")}
    roots |= set((meta.get("metadata") or {}).get(ROOTS_KEY, []))
    report.roots = sorted(roots)
    return report


def snapshot(store: Any, name: str, target: Path) -> Path:
    """A .tar of the collection folder, flushed and taken under the collection's lock."""
    from pixseek.store.edge import close_shards

    directory = store._dir(name)
    store._shard(name)  # opens it (integrity checks, lock) before anything is copied
    close_shards(directory)  # flushed and sealed: the snapshot carries the seal
    shard = _load_raw(directory / "shard", name)  # hold the lock while copying
    try:
        if target.is_dir():
            target = target / f"{name}.pixseek-snapshot.tar"
        tmp = target.with_name(target.name + ".tmp")
        with tarfile.open(tmp, "w") as tar:
            for path in sorted(directory.rglob("*")):
                relative = path.relative_to(directory)
                if relative.parts[0] in ("shard.repair", "shard.damaged", "shard.restore"):
                    continue
                if path.is_file():
                    tar.add(path, arcname=str(Path(name) / relative), recursive=False)
        os.replace(tmp, target)
    finally:
        shard.close()
    return target


def restore(store: Any, name: str, source: Path) -> int:
    """Replace collection `name` with the snapshot's content (the snapshot is verified first)."""
    from pixseek.store.edge import META_FILE, close_shards

    if not source.is_file():
        raise InputError(f"snapshot {source} does not exist")
    directory = store._dir(name)
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.root, prefix=".restore-") as scratch:
        try:
            with tarfile.open(source) as tar:
                tar.extractall(scratch, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{source} is not a readable pixseek snapshot: {exc}") from None
        folders = [p for p in Path(scratch).iterdir() if (p / META_FILE).is_file()]
        if len(folders) != 1:
            raise InputError(f"{source} is not a pixseek snapshot (no {META_FILE} inside)")
        unpacked = folders[0]
        if directory.exists():
            close_shards(directory)
            held = _load_raw(directory / "shard", name) if (directory / "shard").exists() else None
            if held is not None:
                held.close()  # only to prove no other process holds it
        retired = store.root / f".{name}.replaced"
        shutil.rmtree(retired, ignore_errors=True)
        if directory.exists():
            os.replace(directory, retired)
        os.replace(unpacked, directory)
        shutil.rmtree(retired, ignore_errors=True)
    store._storage_cache.pop(name, None)
    info = store.get_collection(name)  # the seal in the snapshot verifies the files and count
    return info.points if info is not None else 0
