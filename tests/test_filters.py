"""The --where filter language: what it compiles to, its positioned errors, and that every operator
selects exactly the right points on both store backends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pixseek.search.engine import run_search
from pixseek.search.filters import FilterSyntaxError, compile_filters, parse_where
from pixseek.search.query import QuerySpec, Term
from qdrant_client import models

from pixseek.errors import UserError
from pixseek.store.base import PointRecord

PAYLOADS = {
    "a": {"labels": ["dog", "cat"], "source": "trip/beach/a.jpg", "width": 640, "height": 480,
          "taken": "2021-05-01T10:00:00Z", "format": "JPEG", "mtime": 1_600_000_000.0,
          "captions": ["A dog and a cat on the beach"], "meta": {"image_id": 1}},
    "b": {"labels": ["dog"], "source": "city/b.png", "width": 1024, "height": 768,
          "taken": "2019-12-31T23:59:59Z", "format": "PNG", "mtime": 1_500_000_000.0,
          "captions": ["a dog in the city"], "meta": {"image_id": 2}},
    "c": {"labels": ["cat"], "source": "home/beachball.jpg", "width": 320, "height": 240,
          "taken": "2020-01-01T00:00:00Z", "format": "JPEG", "mtime": 1_700_000_000.0,
          "captions": ["a cat with a ball"], "meta": {"image_id": 3}},
    "d": {"labels": [], "source": "misc/d.jpg", "width": 639, "height": 639,
          "format": "JPEG", "mtime": 1_650_000_000.0, "captions": [], "meta": {"image_id": 4}},
    "e": {"labels": ["teddy bear", "person"], "source": "trip/e.jpg", "width": 2000,
          "height": 1000, "taken": "2023-07-14T12:00:00Z", "format": "JPEG",
          "mtime": 1_690_000_000.0, "captions": ["a person holding a teddy bear"],
          "meta": {"image_id": 5}},
}  # fmt: skip
IDS = {name: str(uuid.uuid5(uuid.NAMESPACE_OID, name)) for name in PAYLOADS}
NAMES = {v: k for k, v in IDS.items()}

# expression -> the points it must select, exactly
CASES = {
    "label=dog": {"a", "b"},
    "label == cat": {"a", "c"},
    "labels=dog": {"a", "b"},
    "label!=cat": {"b", "d", "e"},
    "label in (dog, cat)": {"a", "b", "c"},
    "label in (teddy bear, nothing)": {"e"},
    "label not in (dog, cat)": {"d", "e"},
    "label=teddy bear": {"e"},
    "label='teddy bear'": {"e"},
    "width>=640": {"a", "b", "e"},
    "width>640": {"b", "e"},
    "width<640": {"c", "d"},
    "width<=640": {"a", "c", "d"},
    "width=639": {"d"},
    "width!=640": {"b", "c", "d", "e"},
    "height in (480, 240)": {"a", "c"},
    "taken>=2020-01-01": {"a", "c", "e"},
    "taken>2020-01-01": {"a", "e"},
    "taken<2020-01-01": {"b"},
    "taken<=2020-01-01": {"b", "c"},
    "taken=2021-05-01": {"a"},
    "taken>=2021-05-01T10:00:00Z": {"a", "e"},
    "taken>2021-05-01T10:00:00": {"e"},
    "mtime>=2020-09-13": {"a", "c", "d", "e"},
    "mtime<1600000000": {"b"},
    "source~beach": {"a", "c"},
    "source!~beach": {"b", "d", "e"},
    "source~trip/": {"a", "e"},
    "caption~teddy": {"e"},
    "format=PNG": {"b"},
    "meta.image_id=3": {"c"},
    "meta.image_id>=4": {"d", "e"},
    '{"must": [{"key": "labels", "match": {"value": "dog"}}]}': {"a", "b"},
    '{"should": [{"key": "width", "range": {"gte": 1000}}, {"is_empty": {"key": "labels"}}]}': {
        "b",
        "d",
        "e",
    },
}


@pytest.fixture
def filtered(store):
    store.create_collection("f", {"clip": 3}, {})
    store.upsert(
        "f",
        [
            PointRecord(IDS[name], {"clip": [1.0, 0.1 * i, 0.0]}, payload)
            for i, (name, payload) in enumerate(PAYLOADS.items())
        ],
    )
    return store


def _selected(store, flt: models.Filter | None) -> set[str]:
    spec = QuerySpec(terms=(Term("point", IDS["a"]),), exclude_examples=False)
    hits = run_search(store, None, "f", spec, filter=flt, limit=100)
    return {NAMES[h.id] for h in hits}


def test_each_operator_selects_exactly_the_right_points(filtered):
    assert _selected(filtered, None) == set(PAYLOADS)
    wrong = {}
    for expression, expected in CASES.items():
        got = _selected(filtered, parse_where(expression))
        if got != expected:
            wrong[expression] = (sorted(got), sorted(expected))
    assert wrong == {}


def test_several_expressions_are_anded(filtered):
    flt = compile_filters(["label=dog", "width>=1000"])
    assert _selected(filtered, flt) == {"b"}
    not_a = '{"must_not": [{"has_id": ["' + IDS["a"] + '"]}]}'
    flt = compile_filters(["source~trip", "label!=dog", not_a])
    assert _selected(filtered, flt) == {"e"}
    assert compile_filters([]) is None


def test_compiled_shapes():
    either = models.Filter(
        should=[
            models.FieldCondition(key="label_keys", match=models.MatchAny(any=["dog"])),
            models.FieldCondition(key="labels", match=models.MatchAny(any=["Dog"])),
        ]
    )
    assert parse_where("label=Dog") == models.Filter(must=[either])
    assert parse_where("label!=Dog") == models.Filter(must_not=[either])
    assert parse_where("label in (dog, 'a, b')").must[0].should[1].match == models.MatchAny(
        any=["dog", "a, b"]
    )
    assert parse_where("width>=640").must[0].range == models.Range(gte=640)
    taken = parse_where("taken>=2020-01-01").must[0].range
    assert isinstance(taken, models.DatetimeRange)
    assert taken.gte == datetime(2020, 1, 1, tzinfo=UTC)
    assert parse_where("source~beach").must[0].match == models.MatchSubstring(substring="beach")
    assert parse_where("meta.flag=true").must[0].match == models.MatchValue(value=True)
    assert parse_where('format="123"').must[0].match == models.MatchValue(value="123")


@pytest.mark.parametrize(
    ("expression", "message", "position"),
    [
        ("width>=abc", "expected a number", 7),
        ("width = 6.5", "expected a whole number", 8),
        ("label dog", "expected an operator", 6),
        ("=dog", "expected a field name", 0),
        ("", "empty filter expression", 0),
        ("label=", "expected a value", 6),
        ("label in dog", "expected '('", 9),
        ("label in (dog, cat", "expected ',' or ')'", 18),
        ("label in (dog,, cat)", "expected a value", 14),
        ("label in ()", "expected at least one value", 10),
        ("label in (dog) x", "unexpected text after the list", 15),
        ('label="dog', 'unterminated " quote', 6),
        ('label="dog" x', "unexpected text after the quoted value", 12),
        ("taken>=2020-13-01", "expected a date", 7),
        ("taken>=yesterday", "expected a date", 7),
        ("width~64", "'~' matches text", 6),
        ("label>=dog", "'>=' compares numbers or dates, but labels is text", 7),
        ("height in (1.5, 2)", "expected a whole number", 11),
        ("meta.score in (1.5, 2)", "'in' takes text or whole numbers", 15),
        ("meta.x in (1, a)", "mix of numbers and text", 11),
        ('{"must": [}', "invalid JSON", 10),
        ("[1, 2]", "expected a field name", 0),
    ],
)
def test_malformed_expressions_point_at_the_mistake(expression, message, position):
    with pytest.raises(FilterSyntaxError) as info:
        parse_where(expression)
    text = str(info.value)
    assert text.startswith(f"--where {expression!r}: {message}")
    assert text.endswith(f"at position {position}")
    assert info.value.position == position and "\n" not in text


def test_the_exact_message_from_the_issue():
    with pytest.raises(UserError) as info:
        parse_where("width>=abc")
    assert str(info.value) == "--where 'width>=abc': expected a number at position 7"


def test_invalid_raw_filter_json_is_one_line():
    with pytest.raises(UserError) as info:
        parse_where('{"must": [{"key": "labels", "match": {"valu": "dog"}}]}')
    assert "not a valid Qdrant filter" in str(info.value) and "\n" not in str(info.value)


def test_filters_on_an_empty_result_and_raw_numbers(filtered):
    assert _selected(filtered, parse_where("label=unicorn")) == set()
    assert _selected(filtered, parse_where("width>=1e9")) == set()
    assert _selected(filtered, parse_where("width>639.5")) == {"a", "b", "e"}
