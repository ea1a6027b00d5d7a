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
    """The same race through the command line, once: what a user sees."""
    import json
    import subprocess
    import sys

    from tests.conftest import COCO

    env = {**__import__("os").environ, **pixseek_env}
    folder = COCO / "val2017"
    images = len(list(folder.glob("*.jpg")))
    command = [sys.executable, "-m", "pixseek", "ingest", str(folder), "-c", "race", "--json"]
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], [(c, e[-500:]) for c, _, e in results]
    (loser_err,) = [err for code, _, err in results if code == 2]
    lines = loser_err.strip().splitlines()
    assert len(lines) == 1 and "'race'" in lines[0] and "another pixseek process" in lines[0]
    (winner_out,) = [out for code, out, _ in results if code == 0]
    assert json.loads(winner_out.strip().splitlines()[-1])["added"] == images
    assert EdgeStore(Path(pixseek_env["PIXSEEK_DATA_DIR"]) / "collections").count("race") == images
