"""The running server's address and secret in the data dir, so local commands find it.

`pixseek serve` on the embedded store claims its data dir: it takes an exclusive lock on
`server.lock` (held while it runs, released by the OS if it dies), writes `server.json`
(URL, pid, start time) and `server.secret` (a random token, mode 0600: only the owner can read
it), and removes both on exit. A second `serve` on the same data dir cannot take the lock and
stops with one line. Local commands (`pixseek ingest`, `search`, `collections`, workers) read the
address, check that the lock is really held (a file left by a killed server is ignored), and
send the secret to prove they run as the same user on the same machine.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from pixseek.errors import Conflict

ADDRESS_FILE = "server.json"
SECRET_FILE = "server.secret"
LOCK_FILE = "server.lock"
SECRET_HEADER = "X-Pixseek-Local"


@dataclass(frozen=True)
class ServerAddress:
    url: str  # base URL including any root path, no trailing slash
    pid: int
    secret: str
    started: float


class AlreadyServing(Conflict):
    """Another live `pixseek serve` holds this data dir."""


@dataclass
class Claim:
    """Held by the serving process; `release()` (or process exit) gives the data dir back."""

    data_dir: Path
    lock_fd: int
    address: ServerAddress

    def release(self) -> None:
        if self.lock_fd < 0:
            return
        for name in (ADDRESS_FILE, SECRET_FILE):
            (self.data_dir / name).unlink(missing_ok=True)
        os.close(self.lock_fd)  # closing drops the flock
        self.lock_fd = -1


def local_url(host: str, port: int, root_path: str = "") -> str:
    """The URL a local client uses: wildcard binds are reached on the loopback address."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{root_path.rstrip('/')}"


def claim(data_dir: Path, url: str) -> Claim:
    """Take the data dir for this process, or raise AlreadyServing naming the live server."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = _read_address(data_dir)
        where = f" (pid {other.pid}, {other.url})" if other else ""
        raise AlreadyServing(
            f"a pixseek server is already running on {data_dir}{where}; stop it first, "
            "or give this one another PIXSEEK_DATA_DIR"
        ) from None
    address = ServerAddress(url, os.getpid(), secrets.token_urlsafe(32), time.time())
    secret_path = data_dir / SECRET_FILE
    secret_path.unlink(missing_ok=True)
    secret_fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(secret_fd, "w") as handle:
        handle.write(address.secret)
    tmp = data_dir / (ADDRESS_FILE + ".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": address.pid, "started": address.started}))
    os.replace(tmp, data_dir / ADDRESS_FILE)
    return Claim(data_dir, fd, address)


def find_server(data_dir: Path) -> ServerAddress | None:
    """The live server holding `data_dir`, or None (no server, or one that died)."""
    if not (data_dir / ADDRESS_FILE).is_file() or not _lock_held(data_dir):
        return None
    return _read_address(data_dir)


def _lock_held(data_dir: Path) -> bool:
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)  # nobody holds it: the files are left by a dead server
        return False
    finally:
        os.close(fd)


def _read_address(data_dir: Path) -> ServerAddress | None:
    try:
        record = json.loads((data_dir / ADDRESS_FILE).read_text())
        secret = (data_dir / SECRET_FILE).read_text().strip()
    except (OSError, ValueError):
        return None
    return ServerAddress(str(record["url"]), int(record["pid"]), secret, float(record["started"]))
