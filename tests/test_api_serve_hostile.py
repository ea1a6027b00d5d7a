"""A real `pixseek serve` stays responsive while it refuses hostile requests.

Threads keep sending what used to stall the whole server (a 19 MB JSON body of 1.6M keys, a
filter nested 250 deep, 50k-condition filters, eight uploads declaring 88 megapixels each) while
the test times /health and a normal search: each must answer within 1 s, and every hostile
request must get its 4xx. Stalled and trickling uploads get 408 and free their connection.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import COCO, run_pixseek, serve_process
from tests.test_api_bounds import deep_filter, png_header

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Iterator[str]:
    root = tmp_path_factory.mktemp("hostile")
    images = root / "images"
    images.mkdir()
    for image in sorted((COCO / "val2017").glob("*.jpg"))[:20]:
        shutil.copy(image, images / image.name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")},
        "PIXSEEK_DATA_DIR": str(root / "data"),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
        "PIXSEEK_TEXT_BACKEND": "torch",  # no ONNX export on the first query
        "PIXSEEK_API_READ_TIMEOUT_S": "2",
        "PIXSEEK_API_BODY_TIMEOUT_S": "4",
        "HF_HUB_OFFLINE": "1",
    }
    done = run_pixseek(["ingest", images, "-c", "pics", "--json"], env)
    assert done.returncode == 0, done.stderr
    log = root / "serve.log"
    try:
        with serve_process(env, log, "--log-level", "warning") as (url, _):
            # Load the model once: the timings below are about refusing, not the first load.
            assert httpx.post(f"{url}/search", json=NORMAL, timeout=120).status_code == 200
            yield url
    finally:
        print(log.read_text()[-3000:])


NORMAL = {"collection": "pics", "q": "a dog", "limit": 5}


def _hostile_requests(url: str) -> list[tuple[str, dict[str, Any]]]:
    million = "{" + ",".join(f'"k{i}":0' for i in range(1_600_000)) + "}"  # ~19 MB
    wide = {"should": [{"key": "width", "match": {"value": i}} for i in range(50_000)]}
    medium = {"should": [{"key": "width", "match": {"value": i}} for i in range(3_000)]}
    pngs = [("images", (f"{i}.png", png_header(11_000, 8_000), "image/png")) for i in range(8)]
    query = json.dumps({"collection": "pics", "q": "x"})
    return [
        ("huge body", {"content": million, "headers": {"content-type": "application/json"}}),
        ("deep filter", {"json": {**NORMAL, "where": [json.dumps(deep_filter(250))]}}),
        ("deep filter object", {"json": {**NORMAL, "filter": deep_filter(40)}}),
        ("50k conditions", {"json": {**NORMAL, "where": [json.dumps(wide)]}}),
        ("3k conditions", {"json": {**NORMAL, "filter": medium}}),
        ("88 MP uploads", {"data": {"query": query}, "files": pngs}),
    ]


def attack(url: str, seconds: float) -> dict[str, Any]:
    """Send every hostile request in a loop, one thread each, for `seconds`; what came back.

    Run in a process of its own (see __main__ below), so building and sending 19 MB bodies does
    not slow the test's own timed requests: the timings are the server's.
    """
    hostile = _hostile_requests(url)
    print("ready", flush=True)
    stop = time.monotonic() + seconds
    statuses: dict[str, list[int]] = {name: [] for name, _ in hostile}
    errors: list[str] = []

    def send(name: str, kwargs: dict[str, Any]) -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop:
                try:
                    statuses[name].append(client.post(f"{url}/search", **kwargs).status_code)
                except httpx.HTTPError as exc:  # the server may close a refused upload early
                    errors.append(f"{name}: {exc!r}")

    threads = [threading.Thread(target=send, args=case) for case in hostile]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"statuses": statuses, "errors": errors}


def test_health_and_search_answer_within_a_second_while_hostile_requests_are_refused(server):
    attacker = subprocess.Popen(
        [sys.executable, "-m", "tests.test_api_serve_hostile", server, "8"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert attacker.stdout is not None and attacker.stdout.readline().strip() == "ready"
    latencies: dict[str, list[float]] = {"health": [], "search": []}
    try:
        time.sleep(1.0)
        with httpx.Client(timeout=10) as client:
            for _ in range(10):
                for name, call in (
                    ("health", lambda: client.get(f"{server}/health")),
                    ("search", lambda: client.post(f"{server}/search", json=NORMAL)),
                ):
                    start = time.monotonic()
                    response = call()
                    latencies[name].append(time.monotonic() - start)
                    assert response.status_code == 200, response.text
                time.sleep(0.2)
        out, _ = attacker.communicate(timeout=120)
    finally:
        attacker.kill()
    report = json.loads(out)
    print({name: f"max {max(v):.3f}s" for name, v in latencies.items()}, report["errors"][:2])
    assert max(latencies["health"]) < 1.0 and max(latencies["search"]) < 1.0, latencies
    for name, codes in report["statuses"].items():
        failed = [e for e in report["errors"] if e.startswith(name)]
        assert codes or (name == "huge body" and failed), (name, failed[:2])
        assert set(codes) <= {413, 422}, (name, set(codes))
    assert all(e.startswith("huge body") for e in report["errors"]), report["errors"][:3]


def _raw(server: str, head: bytes) -> socket.socket:
    host, port = server.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    sock.sendall(head)
    return sock


def _status_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ")[1])


def test_stalled_and_trickling_uploads_time_out(server):
    boundary = "xyz"
    head = (
        f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        f"boundary={boundary}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    start = time.monotonic()
    stalled = _raw(server, head + f"--{boundary}\r\n".encode())  # then nothing
    assert httpx.get(f"{server}/health", timeout=5).status_code == 200  # meanwhile
    assert _status_of(stalled) == 408
    assert 1.5 < time.monotonic() - start < 6
    stalled.close()
    # A byte a second never stalls for 2 s, but the whole body must arrive within 4 s.
    json_head = (
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    start = time.monotonic()
    trickle = _raw(server, json_head)
    trickle.settimeout(0.9)
    status = None
    for _ in range(20):
        try:
            trickle.sendall(b" ")
            status = _status_of(trickle)
            break
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    assert status == 408, status
    assert 3.5 < time.monotonic() - start < 8
    trickle.close()


if __name__ == "__main__":
    print(json.dumps(attack(sys.argv[1], float(sys.argv[2]))))
