"""open_clip's SimpleTokenizer (CLIP byte-level BPE) without torch: numpy token ids, same values.

`import open_clip` imports torch (and torchvision), ~5 s on a small machine, so the text query
path cannot use open_clip's tokenizer. This is the same algorithm (OpenAI CLIP's, MIT licence, as
open_clip ships it): ftfy + html unescape + whitespace clean, lower case, the same regex pre-split,
the same BPE merges read from the vocabulary file inside the installed open_clip package (found
with importlib's finder, which does not run the package). tests/test_text_onnx.py checks that the
ids equal open_clip's on a corpus of odd strings; the text tower export checks it again per model.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixseek.errors import Misconfigured

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
CLEAN_MODES = ("lower", "whitespace", "canonicalize")


def default_vocab() -> Path:
    """The BPE merges file shipped in the open_clip package, located without importing it."""
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / VOCAB_FILE
        if path.is_file():
            return path
    raise Misconfigured(
        f"open_clip's tokenizer vocabulary ({VOCAB_FILE}) is not installed; "
        "pip install open_clip_torch"
    )


@functools.lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """Reversible byte -> printable character table (no whitespace/control characters)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


_NEVER = float("inf")
MERGES = 49152 - 256 - 2  # open_clip reads this many merge lines after the header


def _read_merges(path: Path) -> list[str]:
    """The merge lines ("first second"), decompressing only as much of the file as they take
    (a fifth of it: every text search from the shell reads them)."""
    try:
        raw = path.read_bytes()
        inflate = zlib.decompressobj(31)  # gzip container
        text, position = b"", 0
        while text.count(b"\n") <= MERGES and position < len(raw):
            text += inflate.decompress(raw[position : position + 65536])
            position += 65536
        return text.decode("utf-8").split("\n", MERGES + 1)[1 : MERGES + 1]
    except (OSError, zlib.error, UnicodeDecodeError) as exc:
        raise Misconfigured(
            f"cannot read the tokenizer vocabulary {path}: {exc}; reinstall open_clip_torch"
        ) from None


def _pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(word, word[1:], strict=False))


def _clean(text: str, mode: str) -> str:
    # ftfy only changes non-ASCII text, control characters and HTML entities; skipping its
    # import (~0.1 s) for plain ASCII queries gives the same ids (tested against open_clip).
    if not (text.isascii() and text.isprintable() and "&" not in text):
        import ftfy

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    if mode == "canonicalize":
        import string

        text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation))
        return " ".join(text.lower().split()).strip()
    text = " ".join(text.split()).strip()
    return text.lower() if mode == "lower" else text


class ClipTokenizer:
    """Texts -> (N, context_length) int64 ids: start token, BPE ids, end token, zero padding."""

    def __init__(
        self, vocab: Path | None = None, context_length: int = 77, clean: str = "lower"
    ) -> None:
        import regex

        if clean not in CLEAN_MODES:
            raise Misconfigured(f"unknown tokenizer clean mode {clean!r}")
        path = vocab or default_vocab()
        merges = _read_merges(path)
        base = list(_bytes_to_unicode().values())
        words = base + [b + "</w>" for b in base] + [m.replace(" ", "") for m in merges]
        words.extend(SPECIAL_TOKENS)
        self.encoder = {word: index for index, word in enumerate(words)}
        self.ranks = {merge: rank for rank, merge in enumerate(merges)}  # "first second" -> rank
        self.byte_encoder = _bytes_to_unicode()
        self.cache: dict[str, str] = {t: t for t in SPECIAL_TOKENS}
        self.cache_lock = threading.Lock()
        self.pattern = regex.compile(
            "|".join(SPECIAL_TOKENS)
            + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self.sot_id = self.encoder[SPECIAL_TOKENS[0]]
        self.eot_id = self.encoder[SPECIAL_TOKENS[1]]
        self.vocab_size = len(self.encoder)
        self.context_length = context_length
        self.clean = clean

    def _bpe(self, token: str) -> str:
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        word: tuple[str, ...] = (*token[:-1], token[-1] + "</w>")
        pairs = _pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda pair: self.ranks.get(f"{pair[0]} {pair[1]}", _NEVER))
            if f"{bigram[0]} {bigram[1]}" not in self.ranks:
                break
            first, second = bigram
            merged: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
            if len(word) == 1:
                break
            pairs = _pairs(word)
        result = " ".join(word)
        with self.cache_lock:
            self.cache[token] = result
        return result

    def encode(self, text: str) -> list[int]:
        """BPE ids of one text, without the start and end tokens."""
        ids: list[int] = []
        for piece in self.pattern.findall(_clean(text, self.clean)):
            chars = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[part] for part in self._bpe(chars).split(" "))
        return ids

    def __call__(self, texts: Sequence[str] | str) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        result = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > self.context_length:  # truncate, keeping the end token (as open_clip)
                ids = ids[: self.context_length]
                ids[-1] = self.eot_id
            result[row, : len(ids)] = ids
        return result


_shared: dict[tuple[str, int, str], ClipTokenizer] = {}
_shared_lock = threading.Lock()


def shared_tokenizer(context_length: int = 77, clean: str = "lower") -> ClipTokenizer:
    """One tokenizer per setting per process (reading the merges takes ~0.1 s)."""
    key = (str(default_vocab()), context_length, clean)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = ClipTokenizer(Path(key[0]), context_length, clean)
        return _shared[key]
