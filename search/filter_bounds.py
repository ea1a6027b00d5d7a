"""Bounds on the work a filter may ask for, and the values a raw Qdrant filter may hold.

The parser (search/filters.py) checks these on every filter; the HTTP API passes stricter
limits (PIXSEEK_API_MAX_FILTER_DEPTH / _CONDITIONS). The walks are iterative: a filter nested
deep enough to exhaust Python's recursion is refused, not crashed on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from qdrant_client import models

from pixseek.errors import InputError, TooLarge

_INT64 = 2**63


@dataclass(frozen=True)
class FilterLimits:
    """Bounds on the work one set of filters may ask for (the HTTP API sets stricter ones)."""

    depth: int = 32  # JSON nesting of a raw filter (a `--where` expression is 4 deep at most)
    conditions: int = 10_000  # conditions plus listed values (`in (...)`, match.any, has_id)


DEFAULT_LIMITS = FilterLimits()


def _conditions(flt: models.Filter) -> Iterable[Any]:
    """Every condition of `flt`, nested filters' conditions included (iterative: no recursion)."""
    stack: list[Any] = [flt]
    while stack:
        item = stack.pop()
        if isinstance(item, models.Filter):
            for clause in (item.must, item.should, item.must_not):
                if clause is not None:
                    stack.extend(clause if isinstance(clause, list) else [clause])
            if item.min_should is not None:
                stack.extend(item.min_should.conditions)
            continue
        if isinstance(item, models.NestedCondition):
            stack.append(item.nested.filter)
        yield item


def count_conditions(flt: models.Filter) -> int:
    """Conditions plus the values they list (`in (...)`, match.any/except, has_id)."""
    total = 0
    for condition in _conditions(flt):
        total += 1
        if isinstance(condition, models.HasIdCondition):
            total += len(condition.has_id)
        match = getattr(condition, "match", None)
        listed = getattr(match, "any", None) or getattr(match, "except_", None)
        if isinstance(listed, list):
            total += len(listed)
    return total


def field_keys(flt: models.Filter) -> Iterable[str]:
    """The payload paths `flt` reads (field, is-empty, is-null and nested conditions)."""
    for condition in _conditions(flt):
        if isinstance(condition, models.FieldCondition):
            yield condition.key
        elif isinstance(condition, models.IsEmptyCondition):
            yield condition.is_empty.key
        elif isinstance(condition, models.IsNullCondition):
            yield condition.is_null.key
        elif isinstance(condition, models.NestedCondition):
            yield condition.nested.key


def check_paths(flt: models.Filter, what: str) -> None:
    """Every key is a JSON path Qdrant can read (`meta.KEY`, `KEY[]`, `KEY[0]`, `"a b"`): a
    store would otherwise fail on it mid-search (Edge and local mode raise ValueError)."""
    from qdrant_client.local.json_path_parser import parse_json_path

    for key in field_keys(flt):
        try:
            parse_json_path(key)
        except ValueError:
            raise InputError(
                f"{what}: {key!r} is not a payload path Qdrant can read; paths look like "
                'meta.KEY, meta.KEY[], meta.KEY[0] or meta."KEY WITH SPACES"'
            ) from None


def check_conditions(flt: models.Filter, limits: FilterLimits, what: str) -> None:
    total = count_conditions(flt)
    if total > limits.conditions:
        raise TooLarge(
            f"{what}: {total} filter conditions and listed values; the limit is {limits.conditions}"
        )


def bounded_number(kind: str) -> Any:
    def parse(text: str) -> Any:
        number = int(text) if kind == "int" else float(text)
        if kind == "int" and not -_INT64 <= number < _INT64:
            raise ValueError(f"{text[:30]} is outside the 64-bit integer range")
        if kind == "float" and number in (float("inf"), float("-inf")):
            raise ValueError(f"{text[:30]} is too large a number")
        return number

    return parse


def no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number JSON allows")


def check_ids(flt: models.Filter, expression: str, option: str) -> None:
    """has_id takes point ids: UUIDs or unsigned integers (anything else fails in the store)."""
    for condition in _conditions(flt):
        if not isinstance(condition, models.HasIdCondition):
            continue
        for point_id in condition.has_id:
            if isinstance(point_id, int):
                if not 0 <= point_id < 2**64:
                    raise InputError(f"{option}: has_id {point_id} is not a point id")
                continue
            try:
                uuid.UUID(str(point_id))
            except ValueError:
                raise InputError(
                    f"{option} {expression[:60]!r}: has_id {str(point_id)[:40]!r} is not a point "
                    "id (a UUID)"
                ) from None
