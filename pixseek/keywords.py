"""The keyword index of a point: its words (OCR text, captions, labels, file-name words) as one
`keywords` payload string (full-text indexed) and a BM25 sparse vector named `text`.

BM25 term weights are computed here, on the client, by Qdrant Edge's own BM25 model (English
tokenizer, stop words and Snowball stemmer): both store backends get the same vectors, and the
collection's `text` vector applies the IDF modifier, so Qdrant keeps the document frequencies
up to date as points come and go. Queries send each distinct token with weight 1.

OCR misreads words at their edges ("aspe" for "aspen") and drops spaces in small text
("podember"), so the OCR text also contributes character trigrams of its 4+ letter words, and
queries send their words' trigrams at a small weight (GRAM_WEIGHT shared over a word's trigrams,
below one exact word match): an exact word still ranks first, a damaged one is still found.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from pixseek.store.base import TEXT_VECTOR, PointRecord, SparseVector

KEYWORDS_FIELD = "keywords"
# Short texts (a label, a file name, a sign): typical documents hold 10-60 tokens, not 256.
AVG_LEN = 32.0
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_NON_WORD = re.compile(r"[^0-9A-Za-z]+")
GRAM_WEIGHT = 0.5  # a query word's trigrams together weigh half an exact match
GRAM_MIN_WORD = 4
_model: Any = None
_lock = threading.Lock()


def _bm25() -> Any:
    global _model
    with _lock:
        if _model is None:
            import qdrant_edge as qe

            _model = qe.Bm25(qe.Bm25Config(avg_len=AVG_LEN))
        return _model


def file_name_words(source: str) -> list[str]:
    """`holidays/IMG_2041-BeachSunset.jpg` -> ["IMG", "2041", "Beach", "Sunset"]."""
    stem = PurePosixPath(str(source).replace("\\", "/")).stem
    return [w for w in _NON_WORD.split(_CAMEL.sub(" ", stem)) if w]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, str):
                yield item


def keyword_text(payload: dict[str, Any]) -> str:
    """The text a point is found by: OCR text, captions, labels and the file name's words."""
    parts = [
        *_strings(payload.get("ocr")),
        *_strings(payload.get("captions")),
        *_strings(payload.get("labels")),
        " ".join(file_name_words(payload.get("source") or "")),
    ]
    return "\n".join(part.strip() for part in parts if part and part.strip())


def _grams(word: str) -> list[str]:
    return [word[i : i + 3] for i in range(len(word) - 2)]


def _gram_index(gram: str) -> int:
    return zlib.crc32(b"\x01gram:" + gram.encode()) & 0xFFFFFFFF


def _gram_weights(text: str, query: bool) -> dict[int, float]:
    weights: dict[int, float] = {}
    for word in _NON_WORD.split(text.lower()):
        if len(word) < GRAM_MIN_WORD:
            continue
        grams = _grams(word)
        for gram in grams:
            index = _gram_index(gram)
            share = GRAM_WEIGHT / len(grams) if query else 1.0
            weights[index] = max(weights.get(index, 0.0), share)
    return weights


def _sparse(embedded: Any, grams: dict[int, float]) -> SparseVector | None:
    weights = dict(zip(embedded.indices, embedded.values, strict=True))
    for index, value in grams.items():
        weights[index] = weights.get(index, 0.0) + value
    if not weights:
        return None
    return SparseVector(list(weights), list(weights.values()))


def document_vector(text: str, ocr_text: str = "") -> SparseVector | None:
    """BM25 term-frequency weights of a document (plus trigrams of its OCR text); None when it
    has no indexable token."""
    return _sparse(_bm25().embed_document(text), _gram_weights(ocr_text, query=False))


def query_vector(text: str) -> SparseVector | None:
    embedded = _bm25().embed_query(text)
    if not embedded.indices:  # only stop words: trigrams alone would match noise
        return None
    return _sparse(embedded, _gram_weights(text, query=True))


def keyword_fields(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, SparseVector]]:
    """The `keywords` payload field and the `text` vector for a point's payload."""
    text = keyword_text(payload)
    ocr = payload.get("ocr") if isinstance(payload.get("ocr"), str) else ""
    vector = document_vector(text, ocr) if text else None
    return {KEYWORDS_FIELD: text}, ({TEXT_VECTOR: vector} if vector is not None else {})


def with_keywords(point: PointRecord) -> PointRecord:
    """The point with its `keywords` field and `text` vector added."""
    fields, vectors = keyword_fields(point.payload)
    return PointRecord(point.id, {**point.vectors, **vectors}, {**point.payload, **fields})


def query_tokens(text: str) -> list[str]:
    """The words a keyword query matches on (for highlighting), lower-case, in order."""
    return [w.lower() for w in _NON_WORD.split(text) if w]
