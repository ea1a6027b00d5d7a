"""Two processes creating one new collection at the same moment: one wins, the other gets the
one-line busy error, and the collection holds exactly the winner's data; ten times in a row."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from pathlib import Path

import pytest
from pixseek.ingest.collection import get_or_create  # imported before the fork: children start fast

from pixseek.errors import PixseekError, StoreBusy
from pixseek.store import PointRecord
from pixseek.store.edge import EdgeStore

POINTS = 5


def _first_ingest(root: str, worker: int, barrier, results) -> None:
    """What `pixseek ingest` does to a collection it may have to create (ingest/collection.py),
    then keeps it open while it stores points, as an ingest run does."""

    from pixseek.store.edge import EdgeStore

    store = EdgeStore(Path(root))
    barrier.wait()
    try:
        get_or_create(store, "new", {"clip": 4}, {"models": {"clip": "m"}})
        points = [
            PointRecord(str(uuid.UUID(int=worker * 100 + i + 1)), {"clip": [1, 0, 0, i]}, {})
            for i in range(POINTS)
        ]
        store.upsert("new", points)
        store.close()
        time.sleep(0.5)  # still running: a late second process must find it busy
        results.put((worker, "ok", ""))
    except PixseekError as exc:
        results.put((worker, type(exc).__name__, str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported to the test as a failure
        results.put((worker, "crash", f"{type(exc).__name__}: {exc}"))


@pytest.mark.parametrize("round_", range(10))
def test_concurrent_first_creates(tmp_path, round_):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    root = tmp_path / "collections"
    procs = [
        context.Process(target=_first_ingest, args=(str(root), w, barrier, results)) for w in (1, 2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    kinds = sorted(kind for _, kind, _ in outcomes)
    assert kinds == ["StoreBusy", "ok"], outcomes
    (winner,) = [w for w, kind, _ in outcomes if kind == "ok"]
    (message,) = [m for _, kind, m in outcomes if kind == StoreBusy.__name__]
    assert "\n" not in message and "'new'" in message and "another pixseek process" in message

    store = EdgeStore(root)
    assert store.get_collection("new").points == POINTS
    ids = {p.id for p in store.scroll("new")}
    assert ids == {str(uuid.UUID(int=winner * 100 + i + 1)) for i in range(POINTS)}


def test_two_pixseek_ingest_commands_race_for_a_new_collection(pixseek_env):
    """Through the command line, once: two `pixseek ingest` of 3,925 images started together.
    The one that opens second meets the first still running: one-line busy error, exit 2.
    The winner is then stopped with kill -9 (it would take minutes), keeping what it stored."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import IMAGENETTE

    env = {**os.environ, **pixseek_env}
    command = [sys.executable, "-m", "pixseek", "ingest", str(IMAGENETTE / "val"), "-c", "race"]
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True, "env": env}
    procs = [subprocess.Popen(command, **pipes) for _ in range(2)]
    try:
        deadline = time.monotonic() + 600
        while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        (loser,) = [p for p in procs if p.poll() is not None]
        (winner,) = [p for p in procs if p is not loser]
        assert winner.poll() is None, "the winner finished before the other opened"
        err = loser.stderr.read()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert loser.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "'race'" in lines[0] and "another pixseek process" in lines[0], err
    store = EdgeStore(Path(pixseek_env["PIXSEEK_DATA_DIR"]) / "collections")
    sources = [p.payload["source"] for p in store.scroll("race", fields=["source"])]
    assert len(sources) == len(set(sources))  # the winner's points, each once
