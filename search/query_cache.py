"""An on-disk cache of query text embeddings, shared by every process on one data directory.

A shell user repeats queries (`pixseek search dog -c photos -w label=pet`, then with another
filter); each new process would embed the same text again. Entries are keyed by a hash of (the
text tower's weights hash and graph tag, the prompt templates, the text), so a model, a precision
or a template change never returns a stale vector. SQLite (stdlib) in WAL mode gives safe
concurrent readers and writers across processes; the file is bounded to `max_entries` (oldest
entries dropped first). Any database error just turns the cache off for the process: it is an
optimisation, never a reason for a search to fail.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FILE_NAME = "query-embeddings.sqlite3"
log = logging.getLogger("pixseek.query_cache")


def cache_key(tag: str, templates: Sequence[str], text: str) -> str:
    raw = json.dumps([tag, list(templates), text], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class QueryCache:
    """get/put unit vectors by key; `max_entries` rows at most (0 turns the cache off)."""

    def __init__(self, path: Path, max_entries: int = 100_000) -> None:
        self.path = path
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._broken = max_entries <= 0
        self._writes = 0

    def _connect(self) -> sqlite3.Connection | None:
        if self._broken:
            return None
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS query (key TEXT PRIMARY KEY, "
                    "vector BLOB NOT NULL, created REAL NOT NULL)"
                )
                db.commit()
                self._db = db
            except (sqlite3.Error, OSError) as exc:
                self._disable(exc)
        return self._db

    def _disable(self, exc: Exception) -> None:
        log.warning("query embedding cache %s is off for this process: %s", self.path, exc)
        self._broken = True
        self._db = None

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            db = self._connect()
            if db is None:
                return None
            try:
                row = db.execute("SELECT vector FROM query WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._disable(exc)
                return None
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        vector = np.frombuffer(row[0], dtype=np.float32).copy()
        vector.setflags(write=False)
        return vector

    def has(self, key: str) -> bool:
        """Whether `key` is stored (not counted as a hit or a miss)."""
        with self._lock:
            db = self._connect()
            if db is None:
                return False
            try:
                row = db.execute("SELECT 1 FROM query WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._disable(exc)
                return False
        return row is not None

    def put(self, key: str, vector: np.ndarray) -> None:
        blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        with self._lock:
            db = self._connect()
            if db is None:
                return
            try:
                db.execute(
                    "INSERT OR REPLACE INTO query (key, vector, created) VALUES (?, ?, ?)",
                    (key, blob, time.time()),
                )
                self._writes += 1
                if self._writes % 256 == 1:  # bound the file now and then, not on every write
                    db.execute(
                        "DELETE FROM query WHERE key IN (SELECT key FROM query ORDER BY created "
                        "DESC LIMIT -1 OFFSET ?)",
                        (self.max_entries,),
                    )
                db.commit()
            except sqlite3.Error as exc:
                self._disable(exc)

    def __len__(self) -> int:
        with self._lock:
            db = self._connect()
            if db is None:
                return 0
            return int(db.execute("SELECT COUNT(*) FROM query").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
