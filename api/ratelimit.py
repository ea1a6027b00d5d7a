"""Optional per-key rate limit (PIXSEEK_API_RATE_LIMIT requests a minute; 0 = off).

A token bucket per caller: the API key when the request carries the right one, else the client
address (so random wrong keys share their sender's bucket instead of getting fresh ones). A caller
over the limit gets 429 with Retry-After. /health, the page's static files and local pixseek
commands (they send the data dir's secret) are not counted.
Buckets live in this process's memory; behind several API processes each counts on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time

from pixseek.api import errors
from starlette.types import ASGIApp, Receive, Scope, Send

from pixseek.serverfile import SECRET_HEADER

MAX_BUCKETS = 10_000
LOCAL_HEADER = SECRET_HEADER.lower().encode()
UNCOUNTED = ("/health", "/static/", "/favicon")


class TokenBuckets:
    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, caller: str, now: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[caller] = (tokens - 1, now)
                wait = 0.0
            else:
                self._buckets[caller] = (tokens, now)
                wait = (1 - tokens) / self.rate
            if len(self._buckets) > MAX_BUCKETS:
                self._forget_full(now)
        return wait

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they hold no state worth keeping)."""
        for caller, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self.rate >= self.capacity:
                del self._buckets[caller]


def caller_of(scope: Scope, api_key: str | None) -> str:
    headers = dict(scope.get("headers") or [])
    given = headers.get(b"x-api-key")
    auth = headers.get(b"authorization", b"")
    if given is None and auth[:7].lower() == b"bearer ":
        given = auth[7:].strip()
    if api_key and given and hmac.compare_digest(given, api_key.encode()):
        return "key:" + hashlib.sha256(given).hexdigest()[:16]
    client = scope.get("client") or ("unknown", 0)
    return f"addr:{client[0]}"


def _is_local(scope: Scope) -> bool:
    """A pixseek command of the server's own user (it sends the data dir's secret): its store
    calls during an ingest are many, and they are not a client's requests."""
    app = scope.get("app")
    secret = getattr(getattr(app, "state", None), "local_secret", None)
    given = dict(scope.get("headers") or []).get(LOCAL_HEADER, b"")
    return bool(secret) and hmac.compare_digest(given, str(secret).encode())


class RateLimit:
    def __init__(self, app: ASGIApp, per_minute: int, api_key: str | None) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute)
        self.api_key = api_key
        self.per_minute = per_minute

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == "/" or path.startswith(UNCOUNTED) or _is_local(scope):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(caller_of(scope, self.api_key))
        if wait > 0:
            response = errors.error_response(
                429,
                f"more than {self.per_minute} requests a minute from this caller "
                f"(PIXSEEK_API_RATE_LIMIT); retry in {math.ceil(wait)} s",
                {"Retry-After": str(math.ceil(wait))},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
