"""The store of a running `pixseek serve`, used by local commands while the server holds it.

The embedded store can be open in one process only. While `pixseek serve` runs on a data dir,
`open_store` in every other local process (`pixseek ingest`, `search`, `collections`, workers)
returns a RemoteStore: every VectorStore method, sent to the server's private /_store routes
with the data dir's secret (pixseek/serverfile.py) and run there on the server's own store. The
command itself runs as it does alone (same code, output, progress and exit codes); only the
store calls travel.

Calls and results travel pickled: both ends are pixseek processes of the same user on the same
machine (the secret is readable by that user only, and the server refuses calls without it), and
any method a store backend gains works remotely without a codec of its own. Errors come back as
their class and message and are raised again here, so a delegated command exits as one run alone.
"""

from __future__ import annotations

import pickle
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

import pixseek.errors as errors_module
from pixseek.errors import PixseekError, ServiceUnavailable
from pixseek.serverfile import SECRET_HEADER, ServerAddress

MEDIA_TYPE = "application/vnd.pixseek.store-call"  # not JSON: the public JSON guard skips it
RETRIES = 3
UPSERT_BATCH = 1000  # points per request: ~2.5 MB at 512 dimensions with payloads
# Methods that never travel: the server's store stays open for everyone else.
LOCAL_ONLY = frozenset({"close"})


def encode_error(exc: PixseekError) -> dict[str, Any]:
    return {"error": type(exc).__name__, "detail": exc.message, "hint": exc.hint}


def decode_error(data: dict[str, Any], status: int) -> PixseekError:
    """The same error class the server raised (its base class when this side lacks it)."""
    cls = getattr(errors_module, str(data.get("error")), None)
    if not (isinstance(cls, type) and issubclass(cls, PixseekError)):
        cls = ServiceUnavailable if status >= 500 else errors_module.UserError
    exc = cls.__new__(cls)
    Exception.__init__(exc, str(data.get("detail") or f"the server answered {status}"))
    exc.hint = data.get("hint")
    return exc


def read_frames(chunks: Iterator[bytes]) -> Iterator[Any]:
    """Length-prefixed pickles (4-byte big-endian size, then the pickle), as /_store/scroll sends."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= 4:
            (size,) = struct.unpack(">I", buffer[:4])
            if len(buffer) < 4 + size:
                break
            yield pickle.loads(buffer[4 : 4 + size])
            buffer = buffer[4 + size :]


def frame(value: Any) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack(">I", len(data)) + data


class RemoteStore:
    def __init__(self, address: ServerAddress, timeout: float = 600.0) -> None:
        self.address = address
        self.client = httpx.Client(
            base_url=f"{address.url}/_store",
            headers={SECRET_HEADER: address.secret, "content-type": MEDIA_TYPE},
            timeout=httpx.Timeout(timeout, connect=10.0),
            # uvicorn closes idle connections after 5 s: never reuse one that old.
            limits=httpx.Limits(keepalive_expiry=2.0),
        )

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(method, args, kwargs)

        call.__name__ = method
        return call

    def _send(self, path: str, content: bytes, stream: bool = False) -> httpx.Response:
        for attempt in range(RETRIES + 1):
            try:
                request = self.client.build_request("POST", path, content=content)
                return self.client.send(request, stream=stream)
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                # A kept-alive connection the server closed meanwhile (idle timeout): store
                # writes are idempotent by point id, so sending the call again is safe.
                if attempt == RETRIES:
                    raise self._unreachable(exc) from None
                time.sleep(0.2 * (attempt + 1))
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
        raise AssertionError("unreachable")

    def _unreachable(self, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the pixseek server at {self.address.url} (pid {self.address.pid}) holds this "
            f"data dir but did not answer: {exc}"
        )

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            try:
                data = response.json()
            except ValueError:
                data = {"detail": response.text[:200]}
            raise decode_error(data, response.status_code)

    def _call(self, method: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        if method in LOCAL_ONLY:
            return None
        body = pickle.dumps((method, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        response = self._send("/call", body)
        self._raise_for(response)
        return pickle.loads(response.content)

    def upsert(self, name: str, points: Sequence[Any]) -> None:
        # In slices, so no request body nears the server's size limit.
        for start in range(0, len(points), UPSERT_BATCH):
            self._call("upsert", (name, list(points[start : start + UPSERT_BATCH])), {})

    def scroll(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Streamed page by page: a million points never sit in memory at once."""
        body = pickle.dumps(("scroll", args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        response = self._send("/scroll", body, stream=True)
        try:
            if response.status_code >= 400:
                response.read()
                self._raise_for(response)
            for page in read_frames(response.iter_bytes()):
                yield from page
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        finally:
            response.close()

    def close(self) -> None:
        self.client.close()
