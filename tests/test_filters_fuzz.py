"""Property test of the filter language and raw Qdrant filters: every input is a filter or a 4xx.

Hypothesis draws `--where` expressions (known and unknown fields, every operator, odd values) and
raw filter JSON built from Qdrant's own vocabulary with hostile leaves (NaN, infinities, integers
past 64 bits, ids that are not UUIDs, wrong types) and nesting up to 300 deep. Compiling must give
a Filter or a PixseekError whose status is 4xx; through the API (the real embedded store, so the
store's own conversion runs too) no answer may be a 5xx. The OpenAPI fuzz (test_openapi_fuzz.py)
sends its own strategies through the same routes.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import test_api

api_env = test_api.api_env
client = test_api.client

FIELDS = ["label", "labels", "caption", "width", "height", "bytes", "mtime", "taken", "source"]
FIELDS += ["root", "format", "camera", "sha256", "meta.image_id", "meta[x]", "nosuch", "w idth"]
OPERATORS = ["=", "==", "!=", "<", "<=", ">", ">=", "~", "!~", " in ", " not in ", "=>", ""]
VOCABULARY = ["must", "should", "must_not", "min_should", "key", "match", "range", "has_id"]
VOCABULARY += ["is_empty", "is_null", "nested", "value", "any", "except", "text", "gte", "lt"]
VOCABULARY += ["values_count", "conditions", "min_count", "field", "filter", "has_vector"]

hostile_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 2**64, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
)
leaves = st.one_of(
    hostile_numbers,
    st.text(max_size=20),
    st.uuids().map(str),
    st.booleans(),
    st.none(),
    st.sampled_from(["2020-01-01", "2020-01-01T00:00:00Z", "dog", "", "width"]),
)
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=8)), children, max_size=4
        ),
    ),
    max_leaves=30,
)
raw_filters = st.dictionaries(st.sampled_from(VOCABULARY), json_values, min_size=1, max_size=3)


@st.composite
def deep_filters(draw: Any) -> dict[str, Any]:
    flt: Any = draw(raw_filters)
    for _ in range(draw(st.integers(min_value=1, max_value=300))):
        flt = {draw(st.sampled_from(["must", "should", "must_not"])): [flt]}
    return flt


values = st.one_of(
    st.text(max_size=15),
    hostile_numbers.map(str),
    st.lists(st.text(max_size=6), min_size=0, max_size=5).map(lambda v: f"({', '.join(v)})"),
    st.sampled_from(['"quoted, value"', "'unterminated", "(a, b", "2021-13-45", "1e999"]),
)
expressions = st.builds(
    lambda field, op, value: f"{field}{op}{value}",
    st.sampled_from(FIELDS),
    st.sampled_from(OPERATORS),
    values,
)
any_where = st.one_of(
    expressions,
    raw_filters.map(lambda f: json.dumps(f, allow_nan=True)),
    deep_filters().map(lambda f: json.dumps(f, allow_nan=True)),
    st.text(max_size=40),
)


def _compiles_or_4xx(expression: str) -> None:
    from pixseek.search.filters import compile_filters

    from pixseek.errors import PixseekError

    try:
        compile_filters([expression], "--where")
    except PixseekError as exc:
        assert 400 <= exc.http_status < 500, (expression[:200], exc)
        assert "\n" not in exc.message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_where)
def test_any_expression_compiles_or_is_a_4xx(expression):
    _compiles_or_4xx(expression)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(where=any_where, raw=st.one_of(st.none(), raw_filters, deep_filters()))
def test_the_api_answers_every_filter_with_200_or_4xx(client, where, raw):
    body: dict[str, Any] = {"collection": "coco", "q": "x", "where": [where], "limit": 3}
    if raw is not None:
        body["filter"] = raw
    text = json.dumps(body, allow_nan=True)  # NaN as JSON's extension: must be refused, not 500
    response = client.post("/search", content=text, headers={"content-type": "application/json"})
    assert response.status_code < 500, (text[:300], response.text)
    if response.status_code != 200:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail
