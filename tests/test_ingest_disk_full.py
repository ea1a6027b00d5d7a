"""Disk full, on a small tmpfs: a one-line error and a non-zero exit instead of SIGBUS, nothing
damaged, other collections still open, and a pre-flight check refuses a run that cannot fit.

Mounting needs root; elsewhere these tests skip with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from pixseek.store import PointRecord
from pixseek.store.edge import EdgeStore, close_shards
from pixseek.store.integrity import MIN_FREE_BYTES, free_bytes
from tests.conftest import COCO

MB = 1024 * 1024
OPEN = 32 * MB  # what opening a collection writes (a new WAL segment)


@pytest.fixture
def disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        close_shards(mount)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill_to(mount: Path, free: int) -> Path:
    """A ballast file that leaves about `free` bytes free."""
    ballast = mount / "ballast"
    size = free_bytes(mount) - free
    with ballast.open("wb") as handle:
        handle.write(b"\0" * max(0, size))
    return ballast


def _other(root: Path) -> None:
    store = EdgeStore(root)
    store.create_collection("other", {"clip": 32}, {})
    vectors = np.random.default_rng(0).normal(size=(5, 32))
    store.upsert(
        "other",
        [PointRecord(str(uuid.UUID(int=i + 1)), {"clip": vectors[i]}, {}) for i in range(5)],
    )
    close_shards(root)


FILL_SCRIPT = """
import sys, uuid
import numpy as np
from pathlib import Path
from pixseek.errors import DiskFull
from pixseek.store import PointRecord
from pixseek.store.edge import EdgeStore
store, stored = EdgeStore(Path(sys.argv[1])), 0
try:
    for batch in range(1000):
        points = [PointRecord(str(uuid.uuid4()), {"clip": np.random.rand(32)}, {"source": "x" * 2000})
                  for _ in range(200)]
        store.upsert("other", points)
        stored += len(points)
except DiskFull as exc:
    print(stored)
    print(exc)
"""


def test_writes_stop_with_a_one_line_error_before_the_disk_is_full(disk):
    root = disk / "collections"
    _other(root)
    _fill_to(disk, MIN_FREE_BYTES + OPEN + 6 * MB)
    done = subprocess.run(
        [sys.executable, "-c", FILL_SCRIPT, str(root)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])  # 135 was SIGBUS
    stored_text, message = done.stdout.strip().splitlines()
    assert message.startswith(f"no space left on {disk}") and "MB free" in message
    assert int(stored_text) > 0
    store = EdgeStore(root)  # nothing damaged: everything acknowledged is there
    assert store.get_collection("other").points == 5 + int(stored_text)


def test_ingest_refuses_a_run_that_cannot_fit_and_other_collections_open(cli, pixseek_env, disk):
    os.environ["PIXSEEK_DATA_DIR"] = str(disk)  # monkeypatched by pixseek_env: restored after
    _other(disk / "collections")
    ballast = _fill_to(disk, MIN_FREE_BYTES + OPEN + MB // 2)
    code, out, err = cli("ingest", COCO, "-c", "other", "--json")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pixseek: error: no space left on {disk}")
    assert "storing 239 new images needs about" in lines[0]
    code, out, err = cli("collections", "--json")
    assert code == 0 and '"points": 5' in out, err
    code, out, err = cli("ingest", COCO, "-c", "new", "--json")
    assert code == 2 and "a new collection needs about" in err
    ballast.unlink()
    code, out, err = cli("ingest", COCO / "val2017", "-c", "other", "--json")
    assert code == 0, err
