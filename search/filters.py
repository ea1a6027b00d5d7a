"""A small, readable filter language compiled to Qdrant filters (qdrant-client `models.Filter`).

One expression is one condition; several expressions are ANDed:

    label=dog              labels contain "dog"          (`label` is short for the `labels` key)
    label!=cat             labels do not contain "cat"   (points without labels match too)
    label in (dog, cat)    labels contain dog or cat;  `not in (...)` is the negation
    width>=640             numeric range: = != < <= > >=
    taken>=2020-01-01      datetime range on RFC 3339 values; a bare date with `=` means that day
    source~beach           substring of a text value (case-sensitive); `!~` is the negation

Values run to the end of the expression (so `label=teddy bear` works) or to the next comma inside
`( )`; quote them ("..." or '...') to keep commas, parentheses or surrounding spaces. An
expression that starts with `{` is raw Qdrant filter JSON (the server's schema). Mistakes raise a
one-line FilterSyntaxError that names the expression and the 0-based position of the mistake.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pydantic
from pixseek.search.filter_bounds import (
    DEFAULT_LIMITS,
    FilterLimits,
    bounded_number,
    check_conditions,
    check_ids,
    check_paths,
    count_conditions,
    no_constant,
)
from qdrant_client import models

from pixseek import payload
from pixseek.errors import InputError, TooLarge, UserError
from pixseek.jsonscan import check_json_shape

# Field names and types come from the payload catalogue (pixseek/payload.py).
ALIASES = payload.ALIASES
INTEGER_FIELDS = payload.names_of("integer")
EPOCH_FIELDS = payload.names_of("epoch")  # stored as epoch seconds; dates are converted
DATETIME_FIELDS = payload.names_of("datetime")
TEXT_FIELDS = payload.names_of("keyword") | payload.names_of("text")
FULL_TEXT_FIELDS = frozenset(
    name for name, kind in payload.PAYLOAD_INDEXES.items() if kind == "text"
)

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]*")
_OPERATORS = ("!=", "==", ">=", "<=", "!~", "=", ">", "<", "~")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
OPERATOR_HELP = "=, !=, <, <=, >, >=, ~, !~, in (...) or not in (...)"


class FilterSyntaxError(UserError):
    """A malformed filter expression; the message points at the position of the mistake."""

    def __init__(self, expression: str, message: str, position: int, option: str) -> None:
        super().__init__(f"{option} {expression!r}: {message} at position {position}")
        self.expression = expression
        self.position = position


@dataclass
class _Value:
    text: str  # the value as written, quotes removed
    position: int  # where it starts in the expression
    quoted: bool


class _Parser:
    def __init__(self, expression: str, option: str) -> None:
        self.text = expression
        self.pos = 0
        self.option = option

    def fail(self, message: str, position: int | None = None) -> FilterSyntaxError:
        return FilterSyntaxError(
            self.text, message, self.pos if position is None else position, self.option
        )

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_spaces()
        return self.pos >= len(self.text)

    def key(self) -> str:
        self.skip_spaces()
        match = _KEY.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a field name such as label, width, taken or source")
        self.pos = match.end()
        return match.group()

    def operator(self) -> str:
        self.skip_spaces()
        word = re.compile(r"(not\s+)?in\b", re.IGNORECASE).match(self.text, self.pos)
        if word:
            self.pos = word.end()
            return "not in" if word.group(1) else "in"
        for op in _OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return "=" if op == "==" else op
        raise self.fail(f"expected an operator ({OPERATOR_HELP})")

    def quoted(self) -> _Value:
        quote, start = self.text[self.pos], self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                chars.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return _Value("".join(chars), start, True)
            chars.append(char)
        raise self.fail(f"unterminated {quote} quote", start)

    def value(self) -> _Value:
        """A value running to the end of the expression."""
        self.skip_spaces()
        if self.pos >= len(self.text):
            raise self.fail("expected a value")
        if self.text[self.pos] in "\"'":
            value = self.quoted()
            if not self.at_end():
                raise self.fail("unexpected text after the quoted value")
            return value
        start = self.pos
        raw = self.text[start:].rstrip()
        self.pos = len(self.text)
        return _Value(raw, start, False)

    def value_list(self) -> list[_Value]:
        """`( a, b, "c, d" )`"""
        self.skip_spaces()
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            raise self.fail("expected '(' to start a list of values")
        self.pos += 1
        values: list[_Value] = []
        while True:
            self.skip_spaces()
            if self.pos >= len(self.text):
                raise self.fail("expected ')' to close the list")
            if self.text[self.pos] == ")" and not values:
                raise self.fail("expected at least one value in the list")
            if self.text[self.pos] in "\"'":
                values.append(self.quoted())
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] not in ",)":
                    self.pos += 1
                raw = self.text[start : self.pos].rstrip()
                if not raw:
                    raise self.fail("expected a value", start)
                values.append(_Value(raw, start, False))
            self.skip_spaces()
            if self.pos >= len(self.text):
                raise self.fail("expected ',' or ')'")
            if self.text[self.pos] == ")":
                self.pos += 1
                if not self.at_end():
                    raise self.fail("unexpected text after the list")
                return values
            if self.text[self.pos] != ",":
                raise self.fail("expected ',' or ')'")
            self.pos += 1


def parse_where(
    expression: str, option: str = "--where", limits: FilterLimits = DEFAULT_LIMITS
) -> models.Filter:
    """Compile one expression (or raw Qdrant filter JSON) into a qdrant-client Filter."""
    if expression.lstrip().startswith("{"):
        flt = _raw_filter(expression, option, limits)
    else:
        flt = _parse_expression(expression, option)
        check_conditions(flt, limits, f"{option} {expression[:60]!r}")
    check_paths(flt, option)
    return flt


def _parse_expression(expression: str, option: str) -> models.Filter:
    parser = _Parser(expression, option)
    if parser.at_end():
        raise parser.fail("empty filter expression; expected e.g. label=dog")
    name = parser.key()
    key = ALIASES.get(name, name)
    _check_field(parser, name, key)
    op = parser.operator()
    if op in ("in", "not in"):
        values = parser.value_list()
        condition = _any_condition(parser, key, values)
        if key == LABELS:
            condition = _label_condition(values)
        return models.Filter(must_not=[condition]) if op == "not in" else _must(condition)
    value = parser.value()
    if key == LABELS and op in ("=", "!="):
        condition = _label_condition([value])
        return models.Filter(must_not=[condition]) if op == "!=" else _must(condition)
    if op in ("~", "!~"):
        if key in INTEGER_FIELDS | EPOCH_FIELDS | DATETIME_FIELDS:
            raise parser.fail(f"'~' matches text, but {key} is not a text field", value.position)
        match: Any = models.MatchSubstring(substring=value.text)
        if key in FULL_TEXT_FIELDS:  # ocr~exit: every word of the value, any case
            match = models.MatchText(text=value.text)
        condition = models.FieldCondition(key=key, match=match)
        return models.Filter(must_not=[condition]) if op == "!~" else _must(condition)
    if op in ("=", "!="):
        condition = _equals_condition(parser, key, value)
        return models.Filter(must_not=[condition]) if op == "!=" else _must(condition)
    return _must(_range_condition(parser, key, op, value))


LABELS = "labels"
# Custom sidecar columns live under meta (`meta.image_id`, `meta.tags[]`): any key is allowed there
# (a key that is not a Qdrant JSON path, such as `meta[wnid]`, is refused by check_paths).
_CUSTOM_PREFIXES = ("meta.", "meta[")


def _check_field(parser: _Parser, name: str, key: str) -> None:
    """A misspelt field would match nothing and look like 'no results': name the real ones."""
    known = payload.BY_NAME.get(key)
    if (known is not None and known.filterable) or key.startswith(_CUSTOM_PREFIXES):
        return
    names = payload.filterable_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise parser.fail(
        f"unknown field {name!r}; {hint}filterable fields: {', '.join(names)} and meta.KEY "
        "for sidecar columns",
        0,
    )


def _label_condition(values: list[_Value]) -> models.Filter:
    """Labels match whatever their case (`label=shih-tzu` finds `Shih-Tzu`) through the
    case-folded `label_keys` ingest writes; the exact spelling still matches points of
    collections ingested before `label_keys` existed."""
    texts = [value.text for value in values]
    folded = sorted({text.casefold() for text in texts})
    return models.Filter(
        should=[
            models.FieldCondition(key="label_keys", match=models.MatchAny(any=folded)),
            models.FieldCondition(key=LABELS, match=models.MatchAny(any=texts)),
        ]
    )


def compile_filters(
    expressions: Iterable[str], option: str = "--where", limits: FilterLimits = DEFAULT_LIMITS
) -> models.Filter | None:
    """AND several expressions together; None when there are none."""
    filters = [parse_where(expression, option, limits) for expression in expressions]
    if not filters:
        return None
    total = sum(count_conditions(flt) for flt in filters)
    if total > limits.conditions:
        raise TooLarge(
            f"{option}: {total} filter conditions and listed values in all; the limit is "
            f"{limits.conditions}"
        )
    if len(filters) == 1:
        return filters[0]
    return models.Filter(must=list(filters))


def _must(condition: models.FieldCondition) -> models.Filter:
    return models.Filter(must=[condition])


def _raw_filter(expression: str, option: str, limits: FilterLimits) -> models.Filter:
    # Shape first: parsers recurse per level (RecursionError at ~250) and allocate per member.
    check_json_shape(
        expression, limits.depth, 8 * limits.conditions + 16, f"{option} (raw filter JSON)"
    )
    try:
        data = json.loads(
            expression,
            parse_int=bounded_number("int"),
            parse_float=bounded_number("float"),
            parse_constant=no_constant,
        )
    except json.JSONDecodeError as exc:
        raise FilterSyntaxError(expression, f"invalid JSON ({exc.msg})", exc.pos, option) from None
    except ValueError as exc:
        raise InputError(f"{option} {expression[:60]!r}: {exc}") from None
    if not isinstance(data, dict):
        raise FilterSyntaxError(expression, "a Qdrant filter must be a JSON object", 0, option)
    try:
        flt = models.Filter.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        # pydantic locations include union member names such as "list[...]"; keep the path only
        path = [str(p) for p in first.get("loc", ()) if "[" not in str(p) and "(" not in str(p)]
        where = ".".join(path) or "filter"
        raise UserError(
            f"{option} {expression[:200]!r}: not a valid Qdrant filter: {where}: {first.get('msg')}"
        ) from None
    check_ids(flt, expression, option)
    check_conditions(flt, limits, f"{option} (raw filter JSON)")
    return flt


def _scalar(parser: _Parser, key: str, value: _Value) -> Any:
    """The typed value of `key = value` for an exact match."""
    if key in INTEGER_FIELDS:
        return _integer(parser, value)
    if key in TEXT_FIELDS or value.quoted:
        return value.text
    if _INT.fullmatch(value.text):
        return int(value.text)
    if _FLOAT.fullmatch(value.text):
        return float(value.text)
    if value.text in ("true", "false"):
        return value.text == "true"
    return value.text


def _integer(parser: _Parser, value: _Value) -> int:
    if value.quoted or not _INT.fullmatch(value.text):
        if not value.quoted and _FLOAT.fullmatch(value.text):
            raise parser.fail("expected a whole number", value.position)
        raise parser.fail("expected a number", value.position)
    return int(value.text)


def _number(parser: _Parser, value: _Value) -> float:
    if value.quoted or not _FLOAT.fullmatch(value.text):
        raise parser.fail("expected a number", value.position)
    return float(value.text)


def _datetime(parser: _Parser, value: _Value) -> tuple[datetime, bool]:
    """(instant, is_whole_day); naive times are taken as UTC, as ingest records EXIF times."""
    text = value.text
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC), True
        if _DATETIME.fullmatch(text):
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)), False
    except ValueError:
        pass
    raise parser.fail(
        "expected a date (YYYY-MM-DD) or datetime (YYYY-MM-DDTHH:MM:SS)", value.position
    )


def _is_datetime_value(value: _Value) -> bool:
    return not value.quoted and bool(_DATE.fullmatch(value.text) or _DATETIME.fullmatch(value.text))


def _equals_condition(parser: _Parser, key: str, value: _Value) -> models.FieldCondition:
    if key in DATETIME_FIELDS or (
        key not in TEXT_FIELDS | EPOCH_FIELDS and _is_datetime_value(value)
    ):
        instant, whole_day = _datetime(parser, value)
        if whole_day:
            rng = models.DatetimeRange(gte=instant, lt=instant + timedelta(days=1))
        else:
            rng = models.DatetimeRange(gte=instant, lte=instant)
        return models.FieldCondition(key=key, range=rng)
    if key in EPOCH_FIELDS:
        number = _epoch(parser, value)
        return models.FieldCondition(key=key, range=models.Range(gte=number, lte=number))
    scalar = _scalar(parser, key, value)
    if isinstance(scalar, float):  # MatchValue takes only str, int and bool
        return models.FieldCondition(key=key, range=models.Range(gte=scalar, lte=scalar))
    return models.FieldCondition(key=key, match=models.MatchValue(value=scalar))


def _any_condition(parser: _Parser, key: str, values: list[_Value]) -> models.FieldCondition:
    scalars = [_scalar(parser, key, value) for value in values]
    for scalar, value in zip(scalars, values, strict=True):
        if isinstance(scalar, float | bool):
            raise parser.fail("'in' takes text or whole numbers", value.position)
    kinds = {isinstance(s, int) for s in scalars}
    if len(kinds) > 1:
        raise parser.fail("mix of numbers and text in one list; quote the text", values[0].position)
    return models.FieldCondition(key=key, match=models.MatchAny(any=scalars))


def _epoch(parser: _Parser, value: _Value) -> float:
    if _is_datetime_value(value):
        return _datetime(parser, value)[0].timestamp()
    return _number(parser, value)


_RANGE_KEYS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def _range_condition(parser: _Parser, key: str, op: str, value: _Value) -> models.FieldCondition:
    bound = _RANGE_KEYS[op]
    if key in TEXT_FIELDS:
        raise parser.fail(f"'{op}' compares numbers or dates, but {key} is text", value.position)
    if key in DATETIME_FIELDS or (
        key not in INTEGER_FIELDS | EPOCH_FIELDS and _is_datetime_value(value)
    ):
        instant, whole_day = _datetime(parser, value)
        if whole_day and op in (">", "<="):  # "after 2020-01-01" means from the next day on
            instant += timedelta(days=1)
            bound = {"gt": "gte", "lte": "lt"}[bound]
        return models.FieldCondition(key=key, range=models.DatetimeRange(**{bound: instant}))
    number = _epoch(parser, value) if key in EPOCH_FIELDS else _number(parser, value)
    return models.FieldCondition(key=key, range=models.Range(**{bound: number}))
