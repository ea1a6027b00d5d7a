"""Translate qdrant-client filter models (the server schema) into Qdrant Edge filter objects."""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe
from qdrant_client import models

from pixseek.errors import InputError, UserError, first_line


def to_edge_filter(flt: models.Filter | None) -> qe.Filter | None:
    if flt is None:
        return None
    min_should = None
    if flt.min_should is not None:
        min_should = qe.MinShould(
            conditions=[_condition(c) for c in flt.min_should.conditions],
            min_count=flt.min_should.min_count,
        )
    return qe.Filter(
        must=_conditions(flt.must),
        should=_conditions(flt.should),
        must_not=_conditions(flt.must_not),
        min_should=min_should,
    )


def _conditions(value: Any) -> list[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [_condition(item) for item in items]


def _condition(cond: Any) -> Any:
    try:
        return _edge_condition(cond)
    except ValueError as exc:  # Qdrant Edge's own checks, e.g. of a field's JSON path
        raise InputError(
            f"filter: {first_line(exc)}; field paths look like meta.KEY, meta.KEY[] or meta.KEY[0]"
        ) from None


def _edge_condition(cond: Any) -> Any:
    if isinstance(cond, models.Filter):
        return to_edge_filter(cond)
    if isinstance(cond, models.FieldCondition):
        return qe.FieldCondition(
            key=cond.key,
            match=_match(cond.match),
            range=_range(cond.range),
            values_count=_values_count(cond.values_count),
            is_empty=cond.is_empty,
            is_null=cond.is_null,
        )
    if isinstance(cond, models.IsEmptyCondition):
        return qe.IsEmptyCondition(key=cond.is_empty.key)
    if isinstance(cond, models.IsNullCondition):
        return qe.IsNullCondition(key=cond.is_null.key)
    if isinstance(cond, models.HasIdCondition):
        return qe.HasIdCondition(point_ids=set(_point_id(i) for i in cond.has_id))
    if isinstance(cond, models.NestedCondition):
        return qe.NestedCondition(key=cond.nested.key, filter=to_edge_filter(cond.nested.filter))
    raise UserError(
        f"filter condition {type(cond).__name__} is not supported by the embedded store"
    )


def _point_id(value: Any) -> Any:
    return value if isinstance(value, int) else str(value)


def _match(match: Any) -> Any:
    if match is None:
        return None
    if isinstance(match, models.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return qe.MatchAny(list(match.any))
    if isinstance(match, models.MatchExcept):
        return qe.MatchExcept(list(match.except_))
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    if isinstance(match, models.MatchTextAny):
        return qe.MatchTextAny(match.text_any)
    if isinstance(match, models.MatchPhrase):
        return qe.MatchPhrase(match.phrase)
    if isinstance(match, models.MatchPrefix):
        return qe.MatchPrefix(match.prefix)
    if isinstance(match, models.MatchSubstring):
        return qe.MatchSubstring(match.substring)
    raise UserError(f"match {type(match).__name__} is not supported by the embedded store")


def _range(rng: Any) -> Any:
    if rng is None:
        return None
    if isinstance(rng, models.DatetimeRange):
        return qe.RangeDateTime(
            gte=_iso(rng.gte), gt=_iso(rng.gt), lte=_iso(rng.lte), lt=_iso(rng.lt)
        )
    return qe.RangeFloat(gte=rng.gte, gt=rng.gt, lte=rng.lte, lt=rng.lt)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _values_count(vc: models.ValuesCount | None) -> Any:
    if vc is None:
        return None
    return qe.ValuesCount(lt=vc.lt, gt=vc.gt, lte=vc.lte, gte=vc.gte)
