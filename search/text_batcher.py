"""Micro-batching of concurrent text queries: one forward pass for every query waiting.

The HTTP API answers each request in a thread; without batching each thread runs the text tower
alone, so 32 concurrent queries are 32 small forward passes competing for the same cores. Here
the first caller that finds the model idle becomes the leader: it takes every prompt queued so far
(up to `max_batch`), runs one forward pass, hands each caller its rows, and lets the next waiting
caller lead. While a pass runs, new arrivals queue up and become the next batch, so batches grow
with load by themselves. When other queries are already waiting (a burst), the leader also waits
up to `window_s` for more before running. A lone query never waits: at concurrency 1 this adds
no latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Request:
    prompts: list[str]
    done: bool = False
    result: np.ndarray | None = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    prompts: int = 0
    sizes: list[int] = field(default_factory=list)  # requests per forward pass (last 1,000)


class TextBatcher:
    """Wraps `embed(prompts) -> (N, D)` so concurrent callers share forward passes."""

    def __init__(
        self,
        embed: Callable[[list[str]], np.ndarray],
        max_batch: int = 64,
        window_s: float = 0.002,
    ) -> None:
        self._embed = embed
        self.max_batch = max(1, max_batch)  # prompts per forward pass (a request is never split)
        self.window_s = max(0.0, window_s)
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._busy = False
        self.stats = BatchStats()

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        request = _Request(list(prompts))
        with self._cond:
            self._queue.append(request)
            while not request.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch = self._take()
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _take(self) -> list[_Request]:
        """Requests for the next pass (lock held); waits out the window in a burst."""
        if self.window_s and len(self._queue) > 1 and self._prompts_queued() < self.max_batch:
            deadline = time.monotonic() + self.window_s
            while self._prompts_queued() < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        batch: list[_Request] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].prompts) <= self.max_batch):
            request = self._queue.pop(0)
            batch.append(request)
            size += len(request.prompts)
        return batch

    def _prompts_queued(self) -> int:
        return sum(len(r.prompts) for r in self._queue)

    def _run(self, batch: list[_Request]) -> None:
        prompts = [p for request in batch for p in request.prompts]
        try:
            vectors = np.asarray(self._embed(prompts), dtype=np.float32)
        except BaseException as exc:  # every caller of the pass gets the error
            for request in batch:
                request.error, request.done = exc, True
            return
        start = 0
        for request in batch:
            request.result = vectors[start : start + len(request.prompts)]
            request.done = True
            start += len(request.prompts)
        stats = self.stats
        stats.batches += 1
        stats.requests += len(batch)
        stats.prompts += len(prompts)
        stats.sizes = [*stats.sizes[-999:], len(batch)]
