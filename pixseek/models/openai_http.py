"""JSON over HTTP to OpenAI-compatible APIs: retries, timeouts and errors as pixseek classes.

Shared by the hosted images backend (pixseek.models.t2i_openai) and query rewriting
(pixseek.models.rewrite). Standard library only (urllib), so neither needs a client package.

Error mapping, after `attempts` tries for the transient kinds:
- 401 / 403: Misconfigured (the key is missing, wrong or lacks access);
- 404: Misconfigured (no such model or endpoint at that base URL);
- 408, 409, 429, 5xx, timeouts, refused connections: retried with exponential backoff (or the
  server's Retry-After), then ServiceUnavailable, the one kind workers retry later;
- any other 4xx (400 content refusals, bad sizes): InputError with the API's own message;
- a body that is not JSON: Misconfigured (the base URL does not speak this API).
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pixseek.errors import InputError, Misconfigured, ServiceUnavailable

log = logging.getLogger("pixseek.openai_http")

OPENAI_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
USER_AGENT = "pixseek"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call: base URL (ending in /v1 for OpenAI), key and its variable's name."""

    base_url: str
    key: str | None
    key_env: str
    timeout_s: float = 120.0
    attempts: int = 3

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc or self.base_url

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


def split_model(value: str, default_base: str = OPENAI_BASE_URL) -> tuple[str, str]:
    """`MODEL@https://host/v1` -> (MODEL, base); a bare MODEL uses `default_base`."""
    model, at, base = value.rpartition("@")
    if at and base.startswith(("http://", "https://")) and model:
        return model, base.rstrip("/")
    return value, default_base


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _api_message(body: bytes) -> tuple[str, str]:
    """(code, message) from an OpenAI error body `{"error": {"message", "code", "type"}}`."""
    try:
        error = json.loads(body.decode("utf-8", "replace")).get("error") or {}
        if isinstance(error, str):
            return "", error[:300]
        code = str(error.get("code") or error.get("type") or "")
        return code, " ".join(str(error.get("message") or "").split())[:300]
    except (ValueError, AttributeError):
        return "", " ".join(body.decode("utf-8", "replace").split())[:200]


def _retry_after(headers: Any) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After")))
    except (TypeError, ValueError):
        return None


def _open(request: urllib.request.Request, endpoint: Endpoint, what: str) -> bytes:
    """One attempt: the body of a 2xx answer; raises _Transient or a final PixseekError."""
    try:
        with urllib.request.urlopen(request, timeout=endpoint.timeout_s) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
        code, message = _api_message(body)
        detail = f"{status}{' ' + code if code else ''}: {message or exc.reason}"
        if status in RETRY_STATUSES:
            raise _Transient(detail, _retry_after(exc.headers)) from None
        if status in (401, 403):
            raise Misconfigured(
                f"{what} at {endpoint.host} refused the request ({detail}); set "
                f"{endpoint.key_env} to a key with access to this model"
            ) from None
        if status == 404:
            raise Misconfigured(
                f"{what} at {endpoint.host} has no such model or endpoint ({detail}); check "
                "the model name and base URL in PIXSEEK_T2I_MODEL / PIXSEEK_T2I_REWRITE_MODEL"
            ) from None
        raise InputError(
            f"{what} refused the request ({detail}); change the query or options"
        ) from None
    except TimeoutError as exc:
        raise _Transient(f"no answer within {endpoint.timeout_s:g} s ({exc})") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _Transient(f"no answer within {endpoint.timeout_s:g} s") from None
        raise _Transient(f"cannot connect ({exc.reason})") from None
    except (ConnectionError, OSError) as exc:  # reset mid-body, remote closed, ...
        raise _Transient(f"connection failed ({exc})") from None


def fetch(
    method: str,
    url: str,
    endpoint: Endpoint,
    what: str,
    body: dict[str, Any] | None = None,
    *,
    auth: bool = True,
    between: Callable[[], None] | None = None,
) -> bytes:
    """The body of a successful answer, after up to `endpoint.attempts` tries.

    `between` runs before every retry (a job's cancel check); `auth=False` leaves the key out
    (downloading a result URL from another host must not leak it).
    """
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if auth and endpoint.key:
        headers["Authorization"] = f"Bearer {endpoint.key}"
    attempts = max(1, endpoint.attempts)
    last = ""
    for attempt in range(attempts):
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            return _open(request, endpoint, what)
        except _Transient as exc:
            last = str(exc)
            if attempt + 1 >= attempts:
                break
            delay = exc.retry_after
            if delay is None:
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.8, 1.2)
            delay = min(delay, BACKOFF_CAP_S)
            log.warning(
                "%s at %s: %s; retry %d/%d in %.1f s",
                what,
                endpoint.host,
                last,
                attempt + 1,
                attempts - 1,
                delay,
            )
            if between is not None:
                between()
            time.sleep(delay)
    raise ServiceUnavailable(
        f"{what} at {endpoint.host} failed {attempts} time(s), last: {last}; try again later"
    )


def post_json(
    path: str,
    body: dict[str, Any],
    endpoint: Endpoint,
    what: str,
    between: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """POST `body` to base_url/path and return the decoded JSON object."""
    raw = fetch("POST", endpoint.url(path), endpoint, what, body, between=between)
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        snippet = " ".join(raw[:120].decode("utf-8", "replace").split())
        raise Misconfigured(
            f"{what} at {endpoint.host} did not answer JSON ({snippet!r}); check that the base "
            "URL points at an OpenAI-compatible API (usually ending in /v1)"
        ) from None
    if not isinstance(answer, dict):
        raise Misconfigured(f"{what} at {endpoint.host} answered JSON that is not an object")
    return answer
