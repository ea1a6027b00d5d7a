"""Integrity of the embedded store's collection folders: nothing damaged is served silently.

When a process closes a shard cleanly it *seals* the collection: pixseek.json records the point
count, the size of every file in the shard and a digest of its small configuration files
(segment.json, version.info...). Listing a sealed collection reads the count from the seal after
the same file checks, without loading the shard. Opening a sealed collection checks both before
anything is served (a stat per file: cheap), then unseals it until the next clean close, so a
process killed while it held the collection (kill -9, power loss) skips the size check next
time instead of reporting its own unsealed writes as damage. `full_check` reads every point.

Also here: writes stop with a one-line DiskFull while MIN_FREE_BYTES are still free (Edge's
memory-mapped writes die of SIGBUS on a full disk); orphaned temporary segments left by an interrupted index build are removed on open,
and errors raised by Qdrant Edge while serving are turned into one-line errors (a damaged file,
or a full disk) instead of tracebacks.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixseek.errors import DiskFull, PixseekError, StoreCorrupt, first_line

SEAL_KEY = "seal"
LAST_POINTS_KEY = "sealed_points"
TEMP_SEGMENTS = "temp_segments"


def check_hint(name: str) -> str:
    return (
        f"run `pixseek collections check {name}`, then `pixseek collections repair {name}` "
        "(or restore a snapshot)"
    )


def corrupt(name: str, what: str) -> StoreCorrupt:
    return StoreCorrupt(f"collection {name!r} is damaged: {what}; {check_hint(name)}")


def file_sizes(shard_dir: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in sorted(shard_dir.rglob("*")):
        relative = path.relative_to(shard_dir)
        if path.is_file() and relative.parts[0] != TEMP_SEGMENTS:
            sizes[str(relative)] = path.stat().st_size
    return sizes


# Small files whose content (not only size) the seal records: a garbled segment config keeps its
# size, and listing a sealed collection does not load the shard that would notice.
DIGESTED_SUFFIXES = (".json", ".info")
DIGESTED_MAX_BYTES = 64 * 1024


def file_digests(shard_dir: Path, sizes: dict[str, int]) -> dict[str, str]:
    import hashlib

    return {
        relative: hashlib.sha256((shard_dir / relative).read_bytes()).hexdigest()
        for relative, size in sizes.items()
        if relative.endswith(DIGESTED_SUFFIXES) and size <= DIGESTED_MAX_BYTES
    }


def seal_record(shard_dir: Path, points: int) -> dict[str, Any]:
    sizes = file_sizes(shard_dir)
    return {"points": points, "files": sizes, "digests": file_digests(shard_dir, sizes)}


def verify_files(name: str, shard_dir: Path, seal: dict[str, Any]) -> None:
    """The files recorded at the last clean close are all there, none of them shorter."""
    for relative, size in seal.get("files", {}).items():
        path = shard_dir / relative
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise corrupt(name, f"file shard/{relative} is missing") from None
        if actual < size:
            raise corrupt(name, f"file shard/{relative} is {actual} bytes, {size} were written")
    digests = seal.get("digests", {})
    if digests:
        import hashlib

        for relative, digest in digests.items():
            try:
                content = (shard_dir / relative).read_bytes()
            except FileNotFoundError:
                raise corrupt(name, f"file shard/{relative} is missing") from None
            if hashlib.sha256(content).hexdigest() != digest:
                raise corrupt(name, f"file shard/{relative} changed since it was written")


def verify_count(name: str, seal: dict[str, Any], points: int) -> None:
    recorded = seal.get("points")
    if recorded is not None and recorded != points:
        raise corrupt(name, f"{points} points readable, {recorded} were stored")


def remove_orphans(shard_dir: Path) -> int:
    """Temporary segments of an index build that was killed; only ever called while this
    process holds the shard's lock, so no build of ours or of anyone else is using them."""
    temp = shard_dir / TEMP_SEGMENTS
    removed = 0
    if temp.is_dir():
        for entry in temp.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


# Qdrant Edge writes through memory-mapped files: on a full disk the kernel answers a write
# with SIGBUS, which kills the process before any error can be reported. So writes stop while
# this much space is still free, with a one-line DiskFull.
MIN_FREE_BYTES = 64 * 1024 * 1024
NEW_COLLECTION_BYTES = 224 * 1024 * 1024  # measured: 29 MB to create, 161 MB at its first load
OPEN_BYTES = 40 * 1024 * 1024  # loading a shard starts a new 32 MB write-ahead-log segment
_WRITES = frozenset({"update", "optimize", "flush"})


def mount_point(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    while not path.is_mount():
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def require_space(
    where: Path, needed: int = 0, what: str = "", reserve: int = MIN_FREE_BYTES
) -> None:
    """DiskFull unless `needed` bytes plus the reserve are free on the device holding `where`."""
    free = free_bytes(where)
    if free >= needed + reserve:
        return
    wanted = f"{what} needs about {_mb(needed)} MB" if needed else ""
    kept = f"pixseek keeps {_mb(reserve)} MB free" if reserve else ""
    raise DiskFull(
        f"no space left on {mount_point(where)} ({_mb(free)} MB free, "
        f"{' and '.join(x for x in (wanted, kept) if x)}); what was stored so far is kept: "
        "free some space and run the command again"
    )


def _mb(size: int) -> int:
    return round(size / (1024 * 1024))


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc).lower()
    return "no space left" in text or "os error 28" in text or "enospc" in text


def disk_full(where: Path, exc: BaseException | None = None) -> DiskFull:
    detail = f" ({first_line(exc)})" if exc is not None else ""
    return DiskFull(
        f"no space left on the device holding {where}{detail}; what was stored so far is kept: "
        "free some space and run the command again"
    )


def translate(name: str, where: Path, exc: BaseException) -> PixseekError:
    """A Qdrant Edge error while serving a collection, as one line that says what to do."""
    if isinstance(exc, PixseekError):
        return exc
    if is_disk_full(exc):
        return disk_full(where, exc)
    return corrupt(name, f"Qdrant Edge failed reading it ({first_line(exc)})")


class GuardedShard:
    """An EdgeShard whose every call turns Edge's raw errors into one-line pixseek errors."""

    def __init__(self, shard: Any, name: str, where: Path) -> None:
        self._shard = shard
        self._name = name
        self._where = where

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._shard, attribute)
        if not callable(value):
            return value

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if attribute in _WRITES:
                require_space(self._where)
            try:
                return value(*args, **kwargs)
            except PixseekError:
                raise
            except Exception as exc:
                raise translate(self._name, self._where, exc) from None

        return guarded


@dataclass
class CheckReport:
    name: str
    points: int = 0
    recorded: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def full_check(
    name: str, open_shard: Callable[[], Any], scroll_page: Callable[[Any, Any], Any]
) -> CheckReport:
    """Read every point with its payload and vectors: each vector must be finite and, as
    cosine vectors are stored normalised, of unit length; the count must match the shard's."""
    report = CheckReport(name)
    try:
        shard = open_shard()
        expected = shard.info().points_count
        offset = None
        while True:
            records, offset = scroll_page(shard, offset)
            for record in records:
                report.points += 1
                _check_record(record, report)
            if offset is None:
                break
        if report.points != expected:
            report.problems.append(f"{report.points} points read, the index says {expected}")
    except PixseekError as exc:
        report.problems.append(first_line(exc))
    except Exception as exc:
        report.problems.append(f"reading points failed: {first_line(exc)}")
    return report


def _check_record(record: Any, report: CheckReport) -> None:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    for vector_name, values in vectors.items():
        if not isinstance(values, list | tuple) or not values or isinstance(values[0], tuple):
            continue  # sparse vectors have no unit length
        norm = math.sqrt(sum(float(v) * float(v) for v in values))
        damaged = not math.isfinite(norm) or abs(norm - 1.0) > 1e-3
        if damaged and len(report.problems) < 20:
            report.problems.append(
                f"point {record.id}: {vector_name} vector is damaged (length {norm:.4g})"
            )
