"""Query syntax: rclip-style terms, --image/--like prefixes, composed queries, and that the CLI
hands dash-terms such as `-:grass` to the query parser instead of click's option parser."""

from __future__ import annotations

import click
import pytest
from pixseek.search.query import Composed, QueryInput, Term, build_query, parse_terms

from pixseek.errors import UserError


def _terms(*tokens: str) -> list[tuple[str, str, float]]:
    return [(t.kind, t.value, t.weight) for t in parse_terms(tokens)]


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["red", "car"], [("text", "red car", 1.0)]),
        (["horse", "+", "stripes"], [("text", "horse", 1.0), ("text", "stripes", 1.0)]),
        (["apple", "-", "fruit"], [("text", "apple", 1.0), ("text", "fruit", -1.0)]),
        (["dog", "-", "tall", "grass"], [("text", "dog", 1.0), ("text", "tall grass", -1.0)]),
        (["2:golden retriever", "+", "./pool.jpg"],
         [("text", "golden retriever", 2.0), ("image", "./pool.jpg", 1.0)]),
        (["./racing car.jpg", "-", "2:sports car", "+", "2:snow"],
         [("image", "./racing car.jpg", 1.0), ("text", "sports car", -2.0), ("text", "snow", 2.0)]),
        (["dog", "-:grass", "-./x.jpg", "-/abs/y.png"],
         [("text", "dog", 1.0), ("text", "grass", -1.0), ("image", "./x.jpg", -1.0),
          ("image", "/abs/y.png", -1.0)]),
        (["-0.5:grass", "dog"], [("text", "grass", -0.5), ("text", "dog", 1.0)]),
        (["photo.JPG"], [("image", "photo.JPG", 1.0)]),
        (["time: noon"], [("text", "time: noon", 1.0)]),
        (["-", "-", "dog"], [("text", "dog", 1.0)]),
    ],
)  # fmt: skip
def test_rclip_terms(tokens, expected):
    assert _terms(*tokens) == expected


def test_image_and_point_prefixes_and_composition():
    point = "8DD9160A-327A-5737-934E-000000000000"
    spec = build_query(QueryInput(images=["a.jpg", "-:b.jpg", "2:c.jpg"], likes=[f"-{point}"]))
    assert [(t.kind, t.value, t.weight) for t in spec.terms] == [
        ("image", "a.jpg", 1.0),
        ("image", "b.jpg", -1.0),
        ("image", "c.jpg", 2.0),
        ("point", point.lower(), -1.0),
    ]
    spec = build_query(
        QueryInput(words=["-:grass"], likes=[point], modify="at night", modify_weight=0.25)
    )
    composed = spec.terms[1]
    assert isinstance(composed, Composed)
    assert composed.reference == Term("point", point.lower()) and composed.mix == 0.25
    assert spec.point_ids == [point.lower()]
    assert "modified by 'at night'" in spec.describe()


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        (QueryInput(), "nothing to search for"),
        (QueryInput(words=["-:dog"]), "only negative terms"),
        (QueryInput(words=["2:"]), "nothing to search for"),
        (QueryInput(words=["dog", "-"]), "ends with"),
        (QueryInput(images=["a.jpg", "b.jpg"], modify="x"), "exactly one reference"),
        (QueryInput(images=["a.jpg"], modify="  "), "--modify needs some text"),
        (QueryInput(images=["a.jpg"], modify="x", modify_weight=1.5), "--modify-weight"),
    ],
)
def test_bad_queries(given, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")):
        build_query(given)


def test_cli_passes_dash_terms_through_in_order():
    from pixseek.cli.search import search_command

    ctx = click.Context(search_command)
    args = [
        "dog", "-:grass", "-c", "coco", "-2:beach", "--like", "-:abc", "./x.jpg",
        "-k", "3", "-", "cat", "--where", "label!=cat", "--json", "-./neg.jpg",
    ]  # fmt: skip
    search_command.parse_args(ctx, args)
    params = ctx.params
    assert params["query"] == (
        "dog", "-:grass", "-2:beach", "./x.jpg", "-", "cat", "-./neg.jpg",
    )  # fmt: skip
    assert params["collection"] == "coco" and params["limit"] == 3
    assert params["likes"] == ("-:abc",) and params["wheres"] == ("label!=cat",)
    assert params["as_json"] is True
    with pytest.raises(click.NoSuchOption):
        search_command.parse_args(click.Context(search_command), ["dog", "--nope", "-c", "x"])
