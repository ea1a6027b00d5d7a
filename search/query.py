"""Typed search queries and the rclip-style term syntax that builds them.

A query is a list of terms; each is text, an image file or a stored point, with a signed weight
(negative = push results away). Query words follow rclip:

    red car                    plain words join into one text term ("red car")
    horse + stripes            `+` / `-` between terms add or subtract the next term
    2:dog  -:grass  -2:grass   weight prefix `W:` and/or sign prefix on one term
    ./cat.jpg  -./dog.jpg      an image file: starts with ./ ../ / ~/ or ends in an image extension

A composed query is a reference image (or point) plus a text modifier mixed with weight lambda:
normalise((1 - lambda) * reference + lambda * text), the training-free "image + text" baseline of
composed image retrieval (e.g. Pic2Word and SEARLE's baselines, WeiCom's weighted form).
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pixseek.errors import InputError, UserError

TermKind = Literal["text", "image", "point", "ocr", "keyword"]
# `ocr:"exit 12"` (words in the image's OCR text) and `text:"..."` (the whole keyword index:
# OCR text, captions, labels, file name): BM25 keyword terms, searched by search/keyword.py.
KEYWORD_PREFIXES: dict[str, TermKind] = {"ocr:": "ocr", "text:": "keyword"}
KEYWORD_KINDS = frozenset(KEYWORD_PREFIXES.values())
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp")
_PATH_STARTS = ("./", "../", "/", "~/", ".\\", "..\\")
# `[sign][weight]:rest`, with at least a sign or a weight before the colon.
_PREFIX = re.compile(r"^(?P<sign>[+-])?(?P<weight>\d+(?:\.\d*)?|\.\d+)?:(?P<rest>.*)$", re.DOTALL)


def nothing_to_search() -> InputError:
    return InputError(
        "nothing to search for; give query text, --image PATH, --like POINT_ID or --good POINT_ID",
        api_message="nothing to search for; give query text, an uploaded image or a `like` point id",
    )


@dataclass(frozen=True)
class Term:
    kind: TermKind
    value: str  # the text, the image path, or the point id
    weight: float = 1.0  # signed: below 0 pushes results away from this term

    def describe(self) -> str:
        shown = self.value if self.kind == "text" else f"{self.kind}:{self.value}"
        if self.kind in KEYWORD_KINDS:
            shown = f'{"ocr" if self.kind == "ocr" else "text"}:"{self.value}"'
        if self.weight == 1.0:
            return shown
        if self.weight == -1.0:
            return f"-{shown}"
        return f"{self.weight:g}*{shown}"


@dataclass(frozen=True)
class Composed:
    """A reference image or point modified by text: one positive example."""

    reference: Term
    modifier: str
    mix: float = 0.5  # lambda: the text's share of the composed vector
    weight: float = 1.0

    def describe(self) -> str:
        return f"({self.reference.describe()} modified by {self.modifier!r}, lambda={self.mix:g})"


QueryTerm = Term | Composed


@dataclass(frozen=True)
class QuerySpec:
    terms: tuple[QueryTerm, ...] = ()
    ensemble: bool = True  # prompt-template ensembling for text terms
    exclude_examples: bool = True  # stored points used as examples are left out of the results
    # Relevance feedback: results the user marked good / bad (point ids). They steer the query
    # (search/engine.py) and, unlike --like examples, stay eligible as results.
    good: tuple[str, ...] = ()
    bad: tuple[str, ...] = ()

    def describe(self) -> str:
        text = " + ".join(term.describe() for term in self.terms).replace("+ -", "- ")
        marks = [
            f"{len(ids)} marked {kind}"
            for kind, ids in (("good", self.good), ("bad", self.bad))
            if ids
        ]
        return "; ".join([text, *marks]) if text else "; ".join(marks)

    @property
    def point_ids(self) -> list[str]:
        ids = []
        for term in self.terms:
            ref = term.reference if isinstance(term, Composed) else term
            if ref.kind == "point":
                ids.append(ref.value)
        return ids

    @property
    def has_positive(self) -> bool:
        return bool(self.good) or any(term.weight > 0 for term in self.terms)

    @property
    def texts(self) -> list[str]:
        """The texts the text model embeds for this query: text terms and modifiers."""
        out = []
        for term in self.terms:
            if isinstance(term, Composed):
                out.append(term.modifier)
            elif term.kind == "text":
                out.append(term.value)
        return out

    @property
    def keyword_terms(self) -> list[Term]:
        return [t for t in self.terms if isinstance(t, Term) and t.kind in KEYWORD_KINDS]


def looks_like_image(text: str) -> bool:
    """rclip's rule (relative paths start with ./) plus: anything ending in an image extension."""
    return text.startswith(_PATH_STARTS) or text.lower().endswith(IMAGE_EXTENSIONS)


def _split_prefix(token: str) -> tuple[float, str] | None:
    """`-2:grass` -> (-2.0, "grass"); None when the token has no weight prefix."""
    match = _PREFIX.match(token)
    if not match or not (match.group("sign") or match.group("weight")):
        return None
    weight = float(match.group("weight")) if match.group("weight") else 1.0
    if not math.isfinite(weight) or weight == 0:
        raise UserError(f"query term {token!r} has weight 0; use a weight above 0 or drop it")
    if match.group("sign") == "-":
        weight = -weight
    rest = match.group("rest").strip()
    if not rest:
        raise UserError(f"query term {token!r} has a weight but nothing to search for")
    return weight, rest


def parse_terms(tokens: Sequence[str]) -> list[Term]:
    """Parse positional query words (rclip syntax, see the module docstring) into terms."""
    terms: list[Term] = []
    words: list[str] = []  # plain words being joined into one text term
    words_sign = 1.0
    sign: float | None = None  # from a pending `+` / `-` token; applies to the next term

    def flush_words() -> None:
        if words:
            terms.append(Term("text", " ".join(words), words_sign))
            words.clear()

    for raw in _join_quoted(tokens):
        token = raw.strip()
        if not token:
            continue
        keyword = _keyword_term(token)
        if keyword is not None:
            flush_words()
            terms.append(Term(keyword[0], keyword[1], sign or 1.0))
            sign = None
            continue
        if token in ("+", "-"):
            flush_words()
            step = 1.0 if token == "+" else -1.0
            sign = step if sign is None else sign * step
            continue
        prefixed = _split_prefix(token)
        if prefixed is None and token[0] in "+-" and looks_like_image(token[1:]):
            prefixed = (-1.0 if token[0] == "-" else 1.0), token[1:]
        if prefixed is None and looks_like_image(token):
            prefixed = 1.0, token
        if prefixed is not None:
            flush_words()
            weight, rest = prefixed
            kind: TermKind = "image" if looks_like_image(rest) else "text"
            terms.append(Term(kind, rest, weight * (sign or 1.0)))
            sign = None
            continue
        if not words:  # a new phrase starts; it takes the pending sign
            words_sign, sign = sign or 1.0, None
        words.append(token)
    flush_words()
    if sign is not None:
        raise UserError("the query ends with '+' or '-'; put a term after it")
    return terms


def _join_quoted(tokens: Sequence[str]) -> list[str]:
    """`ocr:"exit`, `12"` (a whitespace-split query) -> `ocr:"exit 12"`."""
    joined: list[str] = []
    open_quote = False
    for token in tokens:
        if open_quote:
            joined[-1] += " " + token
            open_quote = not token.endswith('"')
            continue
        joined.append(token)
        for prefix in KEYWORD_PREFIXES:
            rest = token.strip()[len(prefix) :]
            if token.strip().lower().startswith(prefix) and rest.startswith('"'):
                open_quote = len(rest) == 1 or not rest.endswith('"')
    return joined


def _keyword_term(token: str) -> tuple[TermKind, str] | None:
    for prefix, kind in KEYWORD_PREFIXES.items():
        if token.lower().startswith(prefix):
            text = token[len(prefix) :].strip().strip('"').strip()
            if not text:
                raise UserError(f'{prefix} needs words, e.g. {prefix}"exit 12"')
            return kind, text
    return None


def _canonical_id(value: str) -> str:
    """Qdrant prints UUIDs lower-case and hyphenated; accept any spelling of the same UUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value  # the engine reports it as not a point id


def _with_kind(values: Sequence[str], kind: TermKind) -> list[Term]:
    """`--image` / `--like` values: an optional `[sign][weight]:` prefix, then a path or id."""
    terms = []
    for raw in values:
        value = raw.strip()
        prefixed = _split_prefix(value)
        signed = value[:1] in ("-", "+") and (
            kind == "point" or (looks_like_image(value[1:]) and not os.path.exists(value))
        )
        if prefixed is None and signed:
            prefixed = (-1.0 if value[0] == "-" else 1.0), value[1:]
        weight, rest = prefixed if prefixed is not None else (1.0, value)
        if not rest:
            raise UserError(f"empty {kind} reference in the query")
        if kind == "point":
            rest = _canonical_id(rest)
        terms.append(Term(kind, rest, weight))
    return terms


@dataclass
class QueryInput:
    """What a caller (CLI, worker, HTTP API) collected from the user, before it is checked."""

    words: Sequence[str] = ()
    images: Sequence[str] = ()
    likes: Sequence[str] = ()
    modify: str | None = None
    modify_weight: float = 0.5
    ensemble: bool = True
    good: Sequence[str] = ()  # relevance feedback marks (point ids)
    bad: Sequence[str] = ()


def _marks(values: Sequence[str], kind: str) -> tuple[str, ...]:
    ids = [_canonical_id(v.strip()) for v in values]
    if any(not i for i in ids):
        raise InputError(f"empty --{kind} mark; give the point id of a result")
    return tuple(dict.fromkeys(ids))


def build_query(given: QueryInput) -> QuerySpec:
    """Check and assemble the query; every problem is a one-line UserError."""
    terms: list[QueryTerm] = [
        *parse_terms(given.words),
        *_with_kind(given.images, "image"),
        *_with_kind(given.likes, "point"),
    ]
    if given.modify is not None:
        modifier = given.modify.strip()
        if not modifier:
            raise InputError(
                "--modify needs some text, e.g. --modify 'at night'",
                api_message="modify needs some text, e.g. modify: 'at night'",
            )
        if not 0.0 < given.modify_weight <= 1.0:
            raise InputError(
                "--modify-weight must be above 0 and at most 1 (the text's share)",
                api_message="modify_weight must be above 0 and at most 1 (the text's share)",
            )
        references = [
            t
            for t in terms
            if isinstance(t, Term) and t.kind in ("image", "point") and t.weight > 0
        ]
        if len(references) != 1:
            raise InputError(
                "--modify needs exactly one reference: one --image PATH or one --like POINT_ID "
                f"(got {len(references)})",
                api_message="modify needs exactly one reference: one uploaded image or one "
                f"`like` point id (got {len(references)})",
            )
        reference = references[0]
        terms[terms.index(reference)] = Composed(
            Term(reference.kind, reference.value), modifier, given.modify_weight, reference.weight
        )
    good, bad = _marks(given.good, "good"), _marks(given.bad, "bad")
    both = set(good) & set(bad)
    if both:
        raise InputError(f"point {sorted(both)[0]} is marked both good and bad; keep one mark")
    if not terms and not good:
        raise nothing_to_search()
    spec = QuerySpec(terms=tuple(terms), ensemble=given.ensemble, good=good, bad=bad)
    if not spec.has_positive:
        raise UserError(
            "the query has only negative terms; add at least one positive term to search for"
        )
    return spec


def query_words(q: str) -> list[str]:
    """A one-string query (`q` of the HTTP API and of evaluation query files) as query words.

    Split on whitespace, the words `pixseek search` gets from a shell for the same unquoted text:
    `2:dog -:grass` is weight 2 on "dog" and "grass" pushed away. (A shell can quote several
    words into one weighted term, `"2:golden retriever"`; one string cannot.)
    """
    return q.split()


def parse_query_text(q: str, ensemble: bool = True) -> QuerySpec:
    """The QuerySpec `pixseek search WORDS...` builds for the words of `q`."""
    return build_query(QueryInput(words=query_words(q), ensemble=ensemble))
