"""Bound the shape of a JSON text before anything parses it.

Parsers recurse per nesting level and allocate per member: a small hostile body (`[[[[...`, or a
million keys) costs seconds of CPU, gigabytes of memory or a RecursionError. `check_json_shape`
scans the raw text once (a C-level regex finds the structural tokens; strings are skipped whole)
and stops at the first bound it crosses, so refusing a hostile document costs about as much as
reading it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pixseek.errors import TooLarge

# A JSON string (escapes included) or one structural character.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
_BYTE_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')


@dataclass(frozen=True)
class JsonShape:
    depth: int  # deepest nesting of arrays and objects (a bare scalar is 0)
    members: int  # array items plus object members, all levels (an empty container counts 1)


def json_shape(text: str | bytes, max_depth: int, max_members: int) -> JsonShape:
    """The shape of `text`, scanned up to the first bound crossed (then the partial counts).

    Malformed JSON is scanned as far as it goes: the parser that runs next reports it.
    """
    tokens = _BYTE_TOKENS if isinstance(text, bytes) else _TOKENS
    opens = (b"[", b"{") if isinstance(text, bytes) else ("[", "{")
    closes = (b"]", b"}") if isinstance(text, bytes) else ("]", "}")
    comma = b"," if isinstance(text, bytes) else ","
    depth = deepest = commas = containers = 0
    for match in tokens.finditer(text):
        token = match.group()
        if token in opens:
            depth += 1
            containers += 1
            if depth > deepest:
                deepest = depth
                if deepest > max_depth:
                    break
        elif token in closes:
            depth -= 1
        elif token == comma:
            commas += 1
            if commas + containers > max_members:
                break
    return JsonShape(deepest, commas + containers)


def check_json_shape(
    text: str | bytes, max_depth: int, max_members: int, what: str = "the JSON body"
) -> None:
    """Raise TooLarge (413) when `text` nests deeper or holds more members than allowed."""
    shape = json_shape(text, max_depth, max_members)
    if shape.depth > max_depth:
        raise TooLarge(f"{what} nests deeper than {max_depth} levels; flatten it")
    if shape.members > max_members:
        raise TooLarge(f"{what} has more than {max_members} values and members; send less")
