"""Index builds in the background of `pixseek serve`: searches and ingest never wait for them.

Qdrant Edge's optimizer holds the Python GIL for the whole build (minutes at 100k+ points), so
it cannot run in a thread of the server. Instead, per collection:
  1. copy the flushed shard (writers to that collection wait for the copy only);
  2. build the index on the copy in a child process (`python -m pixseek.store.build_index`,
     niced); meanwhile searches and writes go to the live shard, and the ids written are
     journaled;
  3. swap the built shard in and re-apply the journaled points (their current vectors and
     payload, or their deletion), again with writers held back for this step only.
Requests are recorded in `<data_dir>/server/index-pending.json` until their build finishes, so
a build interrupted by a stop or a crash runs again when the server next starts. With a Qdrant
server there is nothing to do: it indexes by itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pixseek.errors import CollectionNotFound, StoreBusy
from pixseek.store import IndexStatus, PointRecord, VectorStore
from pixseek.store.edge import EdgeStore

log = logging.getLogger("pixseek.api")


class BackgroundIndexer:
    def __init__(self, store: VectorStore, work_dir: Path) -> None:
        self.store = store
        self.edge = store if isinstance(store, EdgeStore) else None
        self.work_dir = work_dir
        self.pending_file = work_dir / "index-pending.json"
        self._pending: list[str] = []
        self._journals: dict[str, set[str]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._wake = threading.Condition(self._guard)
        self._stopping = False
        self._child: subprocess.Popen | None = None
        self.building: str | None = None
        self.last: dict[str, Any] = {}
        self._thread: threading.Thread | None = None

    # -- what the server calls ---------------------------------------------------------------

    def start(self) -> None:
        if self.edge is None:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.work_dir.glob("*.building"):
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            resumed = json.loads(self.pending_file.read_text())
        except (OSError, ValueError):
            resumed = []
        with self._guard:
            self._pending = [n for n in resumed if isinstance(n, str)]
        if self._pending:
            log.info("resuming interrupted index builds: %s", ", ".join(self._pending))
        self._thread = threading.Thread(target=self._loop, name="pixseek-indexer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._guard:
            self._stopping = True
            self._wake.notify_all()
            child = self._child
        if child is not None and child.poll() is None:
            child.terminate()  # the request stays pending: the next start builds again
        if self._thread is not None:
            self._thread.join(timeout=10)

    def request(self, name: str) -> IndexStatus:
        """Queue a build of `name` (once) and return where its index stands now."""
        if self.edge is None:
            return self.store.optimize(name)
        status = self.edge.index_status(name)  # CollectionNotFound for unknown names
        status.queued = True
        with self._guard:
            if name not in self._pending and name != self.building:
                self._pending.append(name)
                self._save()
            self._wake.notify_all()
        return status

    def status(self) -> dict[str, Any]:
        with self._guard:
            return {"building": self.building, "pending": list(self._pending), **self.last}

    @contextmanager
    def writing(self, name: str, ids: Sequence[str]) -> Iterator[None]:
        """Wrap every write to `name`: held back during a copy or swap, journaled during a build."""
        with self._lock(name):
            yield
            journal = self._journals.get(name)
            if journal is not None:
                journal.update(ids)

    # -- the build ---------------------------------------------------------------------------

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _save(self) -> None:
        tmp = self.pending_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._pending))
        os.replace(tmp, self.pending_file)

    def _loop(self) -> None:
        while True:
            with self._guard:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                self.building = self._pending[0]
            name = self.building
            try:
                self._build(name)
            except CollectionNotFound:
                self.last = {"last": name, "last_error": "collection was dropped"}
            except Exception as exc:  # logged and reported; the server keeps serving
                log.exception("index build of %s failed", name)
                self.last = {"last": name, "last_error": f"{type(exc).__name__}: {exc}"}
            with self._guard:
                if self._stopping:
                    return
                self.building = None
                if name in self._pending:
                    self._pending.remove(name)
                self._save()

    def _build(self, name: str) -> None:
        assert self.edge is not None
        started = time.perf_counter()
        copy = self.work_dir / f"{name}.building"
        shutil.rmtree(copy, ignore_errors=True)
        with self._lock(name):
            self.edge.get_collection(name) or _missing(name)
            self.edge.close()  # flush
            shutil.copytree(self.edge.shard_dir(name), copy)
            self._journals[name] = set()
        try:
            command = [sys.executable, "-m", "pixseek.store.build_index", str(copy)]
            if shutil.which("nice"):  # searches keep the CPU first
                command = ["nice", "-n", "10", *command]
            self._child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = self._child.communicate()
            if self._child.returncode != 0:
                raise RuntimeError(err.decode(errors="replace").strip().splitlines()[-1:])
            built = json.loads(out.decode().strip().splitlines()[-1])
            with self._lock(name):
                journal = self._journals.pop(name)
                current = self.edge.retrieve(name, sorted(journal), with_vectors=True)
                self.edge.replace_shard(name, copy)
                points = [PointRecord(p.id, p.vectors, p.payload) for p in current]
                self.edge.upsert(name, points)
                self.edge.delete(name, sorted(journal - {p.id for p in current}))
        finally:
            self._journals.pop(name, None)
            self._child = None
            shutil.rmtree(copy, ignore_errors=True)
        seconds = round(time.perf_counter() - started, 1)
        self.last = {"last": name, "last_seconds": seconds, "last_index": built}
        log.info("index of %s built in %.1fs: %s", name, seconds, built)


def _missing(name: str) -> None:
    raise CollectionNotFound(name)


class IndexedStore:
    """The server's store: writes pass through the indexer's `writing` guard, the rest as is."""

    def __init__(self, store: VectorStore, indexer: BackgroundIndexer) -> None:
        self._store = store
        self._indexer = indexer

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._store, attribute)

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        with self._indexer.writing(name, [p.id for p in points]):
            self._store.upsert(name, points)

    def set_payload(self, name: str, point_id: str, payload: dict[str, Any]) -> None:
        with self._indexer.writing(name, [point_id]):
            self._store.set_payload(name, point_id, payload)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        with self._indexer.writing(name, list(ids)):
            self._store.delete(name, ids)

    def update_vectors(self, name: str, vectors: dict[str, dict[str, Any]]) -> None:
        with self._indexer.writing(name, list(vectors)):
            self._store.update_vectors(name, vectors)

    def add_vector(self, name: str, vector: str, size: int) -> bool:
        """Refused while the collection's index is built: the build's copy lacks the vector."""
        status = self._indexer.status()
        if name == status["building"] or name in status["pending"]:
            raise StoreBusy(
                f"the server is building the vector index of {name!r}; run this again when "
                "it is done"
            )
        with self._indexer.writing(name, []):
            return self._store.add_vector(name, vector, size)

    def optimize(self, name: str) -> IndexStatus:
        return self._indexer.request(name)
