"""A local HTTP server that speaks the documented OpenAI images and chat APIs, for tests.

POST /v1/images/generations takes {model, prompt, n, size, quality?, response_format?} and answers
{"created", "data": [{"b64_json"} | {"url"}], "usage"} like the real API (PNG images of the asked
size, colour from the prompt and index, so different prompts give different pictures); errors are
{"error": {"message", "type", "param", "code"}}. POST /v1/chat/completions answers a rewrite of the
last user message. Tests script the next answers with `script(...)` and read `requests`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

MODERATION = {
    "message": "Your request was rejected as a result of our safety system.",
    "type": "image_generation_user_error",
    "param": None,
    "code": "moderation_blocked",
}


@dataclass
class Step:
    """One scripted answer: a status with a JSON error, raw bytes, a delay, or url results."""

    status: int = 200
    error: dict[str, Any] | None = None
    raw: bytes | None = None  # sent as is (malformed answers)
    sleep: float = 0.0  # before answering (timeouts)
    urls: bool = False  # answer data[].url instead of b64_json
    headers: dict[str, str] = field(default_factory=dict)
    images: int | None = None  # how many images to return (default: n)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


def picture(prompt: str, index: int, size: str) -> bytes:
    width, height = (64, 64) if size == "auto" else (int(v) for v in size.split("x"))
    digest = hashlib.sha256(f"{prompt}|{index}".encode()).digest()
    image = Image.new("RGB", (width, height), tuple(digest[:3]))
    for x in range(0, width, 8):  # a little structure, so embeddings differ beyond colour
        for y in range(0, height, 8):
            if (x // 8 + y // 8 + digest[3]) % 3 == 0:
                image.putpixel((x, y), tuple(digest[4:7]))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class ImagesAPI:
    def __init__(self, key: str | None = "sk-test") -> None:
        self.key = key
        self.steps: list[Step] = []
        self.requests: list[Seen] = []
        self.files: dict[str, bytes] = {}
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                api.record(self, None)
                data = api.files.get(self.path)
                if data is None:
                    self.answer(404, b'{"error": {"message": "no such file"}}')
                else:
                    self.answer(200, data, "image/png")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                api.record(self, body)
                status, payload, headers = api.respond(self.path, self.headers, body)
                self.answer(status, payload, "application/json", headers)

            def answer(
                self, status: int, data: bytes, kind: str = "application/json", headers=None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # timed out
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> ImagesAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, *steps: Step) -> None:
        with self.lock:
            self.steps.extend(steps)

    def record(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> None:
        with self.lock:
            self.requests.append(Seen(handler.command, handler.path, dict(handler.headers), body))

    def posts(self, path: str = "/v1/images/generations") -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST" and r.path == path]

    def respond(self, path: str, headers: Any, body: Any) -> tuple[int, bytes, dict[str, str]]:
        with self.lock:
            step = self.steps.pop(0) if self.steps else Step()
        if step.sleep:
            time.sleep(step.sleep)
        if step.raw is not None:
            return step.status, step.raw, step.headers
        if self.key and headers.get("Authorization") != f"Bearer {self.key}":
            return error(401, "Incorrect API key provided.", "invalid_api_key")
        if step.error is not None:
            return step.status, json.dumps({"error": step.error}).encode(), step.headers
        if not isinstance(body, dict) or not body.get("model"):
            return error(400, "you must provide a model parameter", "invalid_request_error")
        if path == "/v1/chat/completions":
            user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
            content = f"a detailed photograph of {user}, natural light"
            answer = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}  # fmt: skip
            return 200, json.dumps(answer).encode(), {}
        if path != "/v1/images/generations":
            return error(404, f"unknown path {path}", "not_found")
        prompt, n, size = body.get("prompt"), body.get("n", 1), body.get("size", "1024x1024")
        if not isinstance(prompt, str) or not prompt:
            return error(400, "prompt is required", "invalid_request_error")
        if "forbidden" in prompt:
            return 400, json.dumps({"error": MODERATION}).encode(), {}
        data = []
        for index in range(n if step.images is None else step.images):
            png = picture(prompt, index, size)
            if step.urls:
                name = f"/files/{hashlib.sha256(png).hexdigest()[:16]}.png"
                self.files[name] = png
                data.append({"url": self.base_url.removesuffix("/v1") + name})
            else:
                data.append({"b64_json": base64.b64encode(png).decode()})
        usage = {"total_tokens": 100 * n, "input_tokens": 10, "output_tokens": 90 * n}
        answer = {"created": int(time.time()), "data": data, "usage": usage}
        return step.status, json.dumps(answer).encode(), step.headers


def error(status: int, message: str, code: str) -> tuple[int, bytes, dict[str, str]]:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}  # fmt: skip
    return status, json.dumps(body).encode(), {}
