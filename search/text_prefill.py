"""Encode a one-query process's texts in a forked child while the parent opens the store.

`pixseek search TEXT` spends its start in two places that cannot overlap inside one process:
Qdrant Edge's shard load (0.4-0.5 s at 100k points) holds the GIL, and the text tower's start
(graph, vocabulary, one forward pass: ~0.25 s) needs it too. A child forked before the store
opens runs the tower on another core and leaves the embeddings in the on-disk query cache,
where the parent's encoder finds them once the child has exited. Linux only (fork is unsafe
with some macOS frameworks). Without a disk cache, or when the child fails, the parent encodes
the query itself, so any error is still reported where the query is encoded.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from pixseek.search.query_cache import QueryCache

if TYPE_CHECKING:
    from pixseek.search.text_encoder import QueryEncoder

    from pixseek.models.text_tower import OnnxTextTower


def prefill_in_child(
    encoder: QueryEncoder, tower: OnnxTextTower, texts: Sequence[str], ensemble: bool
) -> bool:
    """Start the child; False when this platform or configuration cannot use one."""
    if not sys.platform.startswith("linux") or encoder.disk_cache is None:
        return False
    pending = [text for text in dict.fromkeys(texts) if not encoder.is_cached(text, ensemble)]
    if not pending:
        return True
    for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice
        stream.flush()
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        _encode_and_exit(encoder, tower, pending, ensemble)
    encoder.wait_before_encoding(lambda: _reap(pid))
    return True


def _encode_and_exit(
    encoder: QueryEncoder, tower: OnnxTextTower, texts: list[str], ensemble: bool
) -> NoReturn:
    code = 1
    try:
        inherited = encoder.disk_cache
        assert inherited is not None
        # A connection of its own: an SQLite connection must not be used across a fork.
        encoder.disk_cache = QueryCache(inherited.path, inherited.max_entries)
        tower.prepare(prepack=False)
        for text in texts:
            encoder.encode_text(text, ensemble)
        encoder.disk_cache.close()
        code = 0
    except BaseException:  # noqa: BLE001 - the parent encodes again and reports the error
        pass
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
