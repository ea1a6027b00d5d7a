"""The search engine on both store backends, with hand-made vectors (no model needed).

Every ranking is checked against a brute-force numpy oracle: the cosine similarity of each
point to the query direction v = sum(w_i t_i), examples excluded, ties broken by id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image
from pixseek.search.engine import plan_search, run_search
from pixseek.search.query import Composed, QueryInput, QuerySpec, Term, build_query
from pixseek.search.text_encoder import QueryEncoder

from pixseek.errors import CollectionNotFound, Misconfigured, UserError
from pixseek.store.base import PointRecord

AXES = {"dog": 0, "grass": 1, "beach": 2, "night": 3, "cat": 4, "car": 5}
DIM = 6


def axis(name: str) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[AXES[name]] = 1.0
    return vector


def mix(**parts: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    for name, amount in parts.items():
        vector += amount * axis(name)
    return vector


POINTS = {
    "dog_grass": mix(dog=1, grass=0.8),
    "dog_beach": mix(dog=1, beach=0.8),
    "dog": mix(dog=1, grass=0.1, beach=0.1),
    "grass": mix(grass=1),
    "beach_night": mix(dog=0.2, beach=1, night=1),
    "dog_night": mix(dog=1, night=0.9),
    "cat": mix(cat=1, grass=0.3),
    "car": mix(car=1, night=0.2),
}
IDS = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, name)) for name in POINTS}
NAMES = {point_id: name for name, point_id in IDS.items()}


class HandModel:
    """A 'CLIP' whose text vectors are the axes above and image vectors the pixel colour."""

    identifier = "hand-made/1"
    dim = DIM

    def __init__(self) -> None:
        self.text_calls: list[list[str]] = []

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_calls.append(list(texts))
        return np.stack(
            [_unit(sum((axis(w) for w in t.split() if w in AXES), mix())) for t in texts]
        )

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        rows = []
        for image in images:
            r, g, b = image.convert("RGB").getpixel((0, 0))
            rows.append(_unit(mix(dog=r / 255, grass=g / 255, beach=b / 255)))
        return np.stack(rows)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture
def coll(store):
    store.create_collection("hand", {"clip": DIM}, {"models": {"clip": HandModel.identifier}})
    store.upsert(
        "hand",
        [
            PointRecord(IDS[name], {"clip": vec}, {"source": f"{name}.jpg", "labels": [name]})
            for name, vec in POINTS.items()
        ],
    )
    return store


@pytest.fixture
def encoder() -> QueryEncoder:
    return QueryEncoder(HandModel, templates=())


def oracle(direction: np.ndarray, exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
    d = _unit(direction)
    scored = [
        (name, float(_unit(vec) @ d)) for name, vec in POINTS.items() if IDS[name] not in exclude
    ]
    scored.sort(key=lambda item: (-round(item[1], 5), IDS[item[0]]))
    return scored


def search(store, encoder, spec: QuerySpec, **kwargs) -> list[tuple[str, float]]:
    hits = run_search(store, encoder, "hand", spec, limit=kwargs.pop("limit", 100), **kwargs)
    return [(NAMES[h.id], h.score) for h in hits]


def spec_of(*words: str, likes: Sequence[str] = (), images: Sequence[str] = ()) -> QuerySpec:
    return build_query(QueryInput(words=words, likes=likes, images=images))


def assert_matches_oracle(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [name for name, _ in got] == [name for name, _ in want]
    for (_, score), (_, expected) in zip(got, want, strict=True):
        assert score == pytest.approx(expected, abs=1e-5)


def test_single_text_term_is_nearest_with_cosine_scores(coll, encoder):
    got = search(coll, encoder, spec_of("dog"))
    assert_matches_oracle(got, oracle(axis("dog")))
    assert got[0][0] == "dog"


def test_negative_term_pushes_results_away(coll, encoder):
    plain = [name for name, _ in search(coll, encoder, spec_of("dog"))]
    pushed = search(coll, encoder, spec_of("dog", "-:grass"))
    planned = plan_search(coll, encoder, coll.get_collection("hand"), spec_of("dog", "-:grass"))
    assert type(planned.plan).__name__ == "Recommend"  # Qdrant's own recommend API
    assert_matches_oracle(pushed, oracle(axis("dog") - axis("grass")))
    names = [name for name, _ in pushed]
    assert names.index("dog_grass") > plain.index("dog_grass")
    assert names[-1] == "grass"
    assert names.index("dog_beach") < names.index("dog_grass")


def test_negative_image_and_point_examples(coll, encoder, tmp_path):
    green = tmp_path / "green.png"
    Image.new("RGB", (8, 8), (0, 255, 0)).save(green)
    spec = build_query(QueryInput(words=["dog", f"-{green}"]))
    assert [t.weight for t in spec.terms] == [1.0, -1.0]
    assert_matches_oracle(search(coll, encoder, spec), oracle(axis("dog") - axis("grass")))

    spec = spec_of(likes=[IDS["dog"], f"-:{IDS['dog_grass']}"])
    got = search(coll, encoder, spec)
    want = oracle(
        POINTS["dog"] / np.linalg.norm(POINTS["dog"]) - _unit(POINTS["dog_grass"]),
        exclude=[IDS["dog"], IDS["dog_grass"]],
    )
    assert_matches_oracle(got, want)
    assert not {"dog", "dog_grass"} & {name for name, _ in got}  # examples are left out


def test_weighted_terms_move_the_ranking(coll, encoder):
    even = search(coll, encoder, spec_of("dog", "+", "beach"))
    heavy = search(coll, encoder, spec_of("dog", "+", "3:beach"))
    assert_matches_oracle(even, oracle(axis("dog") + axis("beach")))
    assert_matches_oracle(heavy, oracle(axis("dog") + 3 * axis("beach")))
    rank = lambda result, name: [n for n, _ in result].index(name)  # noqa: E731
    assert rank(heavy, "beach_night") < rank(even, "beach_night")
    assert rank(heavy, "dog") > rank(even, "dog")
    # A weighted negative pushes harder than an unweighted one.
    soft = search(coll, encoder, spec_of("dog", "-:night"))
    hard = search(coll, encoder, spec_of("dog", "-3:night"))
    assert rank(hard, "dog_night") > rank(soft, "dog_night")
    assert_matches_oracle(hard, oracle(axis("dog") - 3 * axis("night")))


def test_recommend_and_weighted_paths_agree(coll, encoder):
    """Weights 1 go through Qdrant recommend, others through one vector: same scores."""
    spec_recommend = spec_of("dog", "+", "beach", "-:night")
    spec_vector = QuerySpec(
        terms=(Term("text", "dog", 1.0000001), Term("text", "beach"), Term("text", "night", -1.0))
    )
    info = coll.get_collection("hand")
    assert type(plan_search(coll, encoder, info, spec_recommend).plan).__name__ == "Recommend"
    assert type(plan_search(coll, encoder, info, spec_vector).plan).__name__ == "Nearest"
    a, b = search(coll, encoder, spec_recommend), search(coll, encoder, spec_vector)
    assert [n for n, _ in a] == [n for n, _ in b]
    assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-5)


def test_composed_query_moves_towards_the_modifier(coll, encoder):
    reference = Term("point", IDS["dog_night"])
    base = search(coll, encoder, QuerySpec(terms=(reference,)))
    for lam in (0.3, 0.7):
        spec = QuerySpec(terms=(Composed(reference, "beach", mix=lam),))
        got = search(coll, encoder, spec)
        ref = _unit(POINTS["dog_night"])
        assert_matches_oracle(
            got, oracle((1 - lam) * ref + lam * axis("beach"), exclude=[IDS["dog_night"]])
        )
    strong = search(coll, encoder, QuerySpec(terms=(Composed(reference, "beach", mix=0.7),)))
    rank = lambda result, name: [n for n, _ in result].index(name)  # noqa: E731
    assert rank(strong, "dog_beach") < rank(base, "dog_beach")
    assert rank(strong, "beach_night") == 0
    # Built from CLI-style input: --like REF --modify TEXT --modify-weight L
    spec = build_query(QueryInput(likes=[IDS["dog_night"]], modify="beach", modify_weight=0.7))
    assert search(coll, encoder, spec) == strong


def test_composed_query_with_an_image_reference(coll, encoder, tmp_path):
    red = tmp_path / "red.png"  # the hand model maps red to the dog axis
    Image.new("RGB", (8, 8), (255, 0, 0)).save(red)
    spec = build_query(QueryInput(images=[str(red)], modify="grass", modify_weight=0.5))
    assert_matches_oracle(search(coll, encoder, spec), oracle(axis("dog") + axis("grass")))


def test_pagination_is_stable_with_ties(store, encoder):
    store.create_collection("hand", {"clip": DIM}, {})
    points = [  # many exact ties: 8 distinct vectors, 5 copies each, ids in shuffled order
        PointRecord(str(uuid.uuid5(uuid.NAMESPACE_DNS, f"tie{i}")), {"clip": vec}, {})
        for i in range(40)
        for vec in [list(POINTS.values())[i % 8]]
    ]
    store.upsert("hand", points)
    spec = spec_of("dog", "-:night")
    everything = run_search(store, encoder, "hand", spec, limit=40)
    assert [h.id for h in everything] == [
        h.id for h in sorted(everything, key=lambda h: (-round(h.score, 6), h.id))
    ]
    for page_size in (3, 7):
        pages = []
        for offset in range(0, 40, page_size):
            page = run_search(store, encoder, "hand", spec, limit=page_size, offset=offset)
            again = run_search(store, encoder, "hand", spec, limit=page_size, offset=offset)
            assert [h.id for h in page] == [h.id for h in again]
            pages.extend(h.id for h in page)
        assert pages == [h.id for h in everything]
        assert len(set(pages)) == 40
    assert run_search(store, encoder, "hand", spec, limit=5, offset=40) == []


def test_threshold_drops_results_below_it(coll, encoder):
    for spec, direction in [
        (spec_of("dog"), axis("dog")),
        (spec_of("dog", "-:grass"), axis("dog") - axis("grass")),
    ]:
        want = [item for item in oracle(direction) if item[1] >= 0.5]
        got = search(coll, encoder, spec, threshold=0.5)
        assert_matches_oracle(got, want)
        assert got and all(score >= 0.5 - 1e-6 for _, score in got)


def test_filter_is_applied_with_examples_excluded(coll, encoder):
    from pixseek.search.filters import compile_filters

    flt = compile_filters(["label in (dog, dog_beach, dog_grass, cat)"])
    got = search(coll, encoder, spec_of(likes=[IDS["dog"]]), filter=flt)
    assert {name for name, _ in got} == {"dog_beach", "dog_grass", "cat"}


def test_encoder_cache_and_ensembling():
    model = HandModel()
    encoder = QueryEncoder(lambda: model, templates=("a {} photo", "night {}"), cache_size=2)
    first = encoder.encode_text("dog")
    np.testing.assert_allclose(
        first, _unit(axis("dog") + _unit(axis("dog") + axis("night"))), atol=1e-6
    )
    assert model.text_calls == [["a dog photo", "night dog"]]
    assert encoder.encode_text("dog") is first  # cache hit: the model is not called again
    assert len(model.text_calls) == 1 and encoder.cache_stats().hits == 1
    np.testing.assert_allclose(encoder.encode_text("dog", ensemble=False), axis("dog"))
    assert model.text_calls[-1] == ["dog"]
    encoder.encode_text("cat")  # capacity 2: evicts the least recently used ("dog", ensembled)
    encoder.encode_text("dog")
    assert model.text_calls[-1] == ["a dog photo", "night dog"]
    assert encoder.cache_stats().size == 2


def test_point_only_queries_never_load_the_model(coll):
    def refuse():
        raise AssertionError("the model must not be loaded for --like queries")

    got = search(coll, QueryEncoder(refuse), spec_of(likes=[IDS["dog"]]))
    assert got[0][0] == "dog_grass" or got[0][0] == "dog_beach"


def test_bad_input_is_a_one_line_user_error(coll, encoder, tmp_path):
    cases = [
        (lambda: search(coll, encoder, spec_of(likes=[str(uuid.uuid4())])), "is not in collection"),
        (lambda: search(coll, encoder, spec_of(likes=["not-an-id"])), "is not a point id"),
        (
            lambda: search(coll, encoder, spec_of(images=[str(tmp_path / "no.jpg")])),
            "does not exist",
        ),
        (lambda: search(coll, encoder, spec_of("dog", "-:dog")), "cancel out"),
        (lambda: run_search(coll, encoder, "missing", spec_of("dog")), "does not exist"),
        (lambda: build_query(QueryInput()), "nothing to search for"),
        (lambda: build_query(QueryInput(words=["-:grass"])), "only negative"),
        (lambda: build_query(QueryInput(words=["dog"], modify="x")), "exactly one reference"),
        (lambda: build_query(QueryInput(words=["dog", "+"])), "ends with"),
        (lambda: build_query(QueryInput(words=["0:dog"])), "weight 0"),
    ]
    not_image = tmp_path / "text.jpg"
    not_image.write_text("hello")
    cases.append((lambda: search(coll, encoder, spec_of(images=[str(not_image)])), "query image"))
    for call, fragment in cases:
        with pytest.raises(UserError) as info:
            call()
        assert fragment in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CollectionNotFound):
        run_search(coll, encoder, "missing", spec_of("dog"))


def test_model_mismatch_is_refused(store, encoder):
    store.create_collection("other", {"clip": DIM}, {"models": {"clip": "ViT-B-32/openai"}})
    store.upsert("other", [PointRecord(IDS["dog"], {"clip": POINTS["dog"]}, {})])
    with pytest.raises(Misconfigured, match="was built with CLIP model 'ViT-B-32/openai'"):
        run_search(store, encoder, "other", spec_of("dog"))
    store.create_collection("wide", {"clip": DIM + 2}, {})
    with pytest.raises(Misconfigured, match="8-d CLIP vectors"):
        run_search(store, encoder, "wide", spec_of("dog"))
