"""Perceptual hashes (64 bits) in numpy, and their form as a Qdrant vector.

pHash: grey, 32x32 (Lanczos), 2-D DCT-II, the 8x8 lowest frequencies, each bit = coefficient >
their median (the same recipe as `imagehash.phash`; bench/results/duplicates.md compares the two
and dHash). dHash is kept for the benchmark.

In Qdrant a hash is the 64-d vector of +-1 (bit set = +1). Stored under cosine distance, the
score of two hashes is dot/64 = 1 - hamming/32, so "Hamming distance <= T" is the score
threshold `1 - T/32`, and Hamming search runs inside Qdrant on both store backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

PHASH_VECTOR = "phash"
PHASH_BITS = 64
_HASH_SIZE = 8
_PHASH_SIDE = 32


@lru_cache(maxsize=1)
def _dct_matrix(n: int = _PHASH_SIDE) -> np.ndarray:
    """Unnormalised DCT-II basis (rows = frequencies): D @ x is scipy.fft.dct(x, type=2) / 2."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def _grey(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.convert("L").resize(size, Image.Resampling.LANCZOS), dtype=np.float64)


def _pack(bits: np.ndarray) -> int:
    value = 0
    for bit in bits.reshape(-1):
        value = (value << 1) | int(bit)
    return value


def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash of an image (any mode; EXIF orientation already applied)."""
    pixels = _grey(image, (_PHASH_SIDE, _PHASH_SIDE))
    basis = _dct_matrix()
    low = (basis @ pixels @ basis.T)[:_HASH_SIZE, :_HASH_SIZE]
    return _pack(low > np.median(low))


def dhash(image: Image.Image) -> int:
    """64-bit difference hash: is each pixel of a 9x8 grey thumbnail darker than its right one."""
    pixels = _grey(image, (_HASH_SIZE + 1, _HASH_SIZE))
    return _pack(pixels[:, 1:] > pixels[:, :-1])


def to_hex(value: int) -> str:
    return f"{value:016x}"


def from_hex(text: str) -> int:
    value = int(text, 16)
    if not 0 <= value < 1 << PHASH_BITS:
        raise ValueError(f"not a 64-bit hash: {text!r}")
    return value


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def to_vector(value: int) -> list[float]:
    """The +-1 vector of a hash, most significant bit first."""
    return [1.0 if (value >> (PHASH_BITS - 1 - i)) & 1 else -1.0 for i in range(PHASH_BITS)]


def score_for_distance(max_distance: int) -> float:
    """The cosine score threshold that keeps exactly the hashes within `max_distance` bits."""
    # Half a bit of slack: the scores are exact multiples of 1/32, the threshold must not be.
    return 1.0 - (max_distance + 0.5) / (PHASH_BITS / 2)


def distance_for_score(score: float) -> int:
    return int(round((1.0 - score) * PHASH_BITS / 2))


def distance_matrix(a: Sequence[int], b: Sequence[int]) -> np.ndarray:
    """All Hamming distances between two lists of hashes (for benchmarks and small sets)."""
    left = np.asarray(a, dtype=np.uint64)[:, None]
    right = np.asarray(b, dtype=np.uint64)[None, :]
    return np.bitwise_count(left ^ right).astype(np.int16)


def hash_vector(payload: dict) -> dict[str, list[float]]:
    """{PHASH_VECTOR: its +-1 vector} for a payload that records a hash, else {}."""
    value = payload.get(PHASH_VECTOR)
    return {PHASH_VECTOR: to_vector(from_hex(value))} if isinstance(value, str) else {}
