"""The torch-free text query path: tokenizer parity, ONNX text tower fidelity, a text search that
imports neither torch nor open_clip, the on-disk query cache and micro-batching."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pixseek.search.query_cache import QueryCache, cache_key
from pixseek.search.text_batcher import TextBatcher
from pixseek.search.text_encoder import QueryEncoder

from pixseek.models.clip_tokenizer import ClipTokenizer

from .conftest import COCO, json_lines

ODD = [
    "",
    " ",
    "\t\n\r",
    "a photo of a dog.",
    "A PHOTO OF A DOG!!!",
    "it's we're they'll I'd you've she's",
    "&amp; &lt;b&gt; &amp;amp;amp; &#39;quoted&#39; &nbsp;",
    "<start_of_text> inside <end_of_text> text",
    "C++ / #tags @user 3.14 1,000,000 $5 50% a/b\\c",
    "Ünïcödé café naïve façade ÇA VA? Straße ǅ ﬁ ﬂ",
    "東京の夜景と桜 한국어 中文字符 ภาษาไทย",
    "مرحبا بالعالم עברית",
    "🐶🚗 ❤️ 👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇯🇵",
    "mojibake: Ã©tÃ© â€œquotesâ€ Ã¼ber",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "control \x00 \x07 \x1b[31mred\x1b[0m \x7f chars",
    "full－width　ｓｐａｃｅ ＡＢＣ",
    "curly ‘quotes’ “double” — dash … ellipsis",
    "x" * 500,
    "word " * 120,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "{} braces {0} %s %(name)s",
    "0123456789 ½ ² Ⅻ ٣",
    "𝔣𝔯𝔞𝔨𝔱𝔲𝔯 𝕕𝕠𝕦𝕓𝕝𝕖 math",
    "e\u0301 combining a\u0308 accents",
]


def _random_corpus(n: int, seed: int = 0) -> list[str]:
    """Random strings from many scripts, symbols and emoji, of random length."""
    rng = random.Random(seed)
    blocks = [
        (0x20, 0x7E),
        (0xA0, 0x24F),
        (0x370, 0x3FF),
        (0x400, 0x4FF),
        (0x590, 0x6FF),
        (0x900, 0x97F),
        (0x3040, 0x30FF),
        (0x4E00, 0x4FFF),
        (0xAC00, 0xAD00),
        (0x2000, 0x206F),
        (0x1F300, 0x1F6FF),
    ]
    words = ["dog", "a", "photo", "of", "the", "red", "car", "at", "night", "&amp;", "it's"]
    corpus = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.5:
                parts.append(rng.choice(words))
            else:
                lo, hi = rng.choice(blocks)
                parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
        corpus.append(rng.choice([" ", "  ", "", "\n"]).join(parts))
    return corpus


@pytest.mark.parametrize("clean,context", [("lower", 77), ("whitespace", 77), ("canonicalize", 16)])
def test_tokenizer_ids_equal_open_clip(clean, context):
    from open_clip.tokenizer import SimpleTokenizer

    theirs = SimpleTokenizer(context_length=context, clean=clean)
    ours = ClipTokenizer(context_length=context, clean=clean)
    corpus = ODD + _random_corpus(400)
    expected = theirs(corpus).numpy()
    got = ours(corpus)
    assert got.dtype == np.int64 and got.shape == expected.shape
    bad = [
        text for text, a, b in zip(corpus, got, expected, strict=True) if not np.array_equal(a, b)
    ]
    assert not bad, f"{len(bad)} strings tokenized differently, e.g. {bad[:3]!r}"
    long = ours(["word " * 200])[0]
    assert long[-1] == ours.eot_id and long[0] == ours.sot_id  # truncated, end token kept


@pytest.fixture(scope="module")
def exported(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny model loaded with torch and its text tower exported into a fresh cache."""
    from pixseek.models.clip import load_clip
    from pixseek.models.text_export import export_text_tower

    cache = tmp_path_factory.mktemp("text-cache")
    name = f"local-dir:{tiny_clip_dir}"
    clip = load_clip(name, "", "cpu", backend="eager", precision="fp32", threads=0)
    clip.embed_texts(["warm"])
    tower = export_text_tower(clip, name, "", cache, "fp32")
    return clip, tower, cache, name


def test_onnx_text_tower_matches_torch(exported):
    clip, tower, cache, name = exported
    assert tower is not None and tower.manifest.trusted
    assert tower.identifier == clip.identifier and tower.dim == clip.dim
    queries = ODD + _random_corpus(200, seed=1)
    reference = clip.embed_texts(queries)
    for batch in (1, 7, len(queries)):  # dynamic batch and length axes
        got = np.concatenate(
            [tower.embed_texts(queries[i : i + batch]) for i in range(0, len(queries), batch)]
        )
        cosine = np.sum(reference * got, axis=1)
        assert cosine.min() >= 0.9999, (batch, float(cosine.min()))


def test_export_is_reused_and_keyed_by_weights(exported, tmp_path):
    from pixseek.models.text_tower import load_text_tower, manifest_path, model_key

    clip, tower, cache, name = exported
    again = load_text_tower(name, "", cache)
    assert again is not None and again.cache_tag == tower.cache_tag
    assert model_key("ViT-B-32", "") is None  # random weights on every load: never exported
    assert model_key("ViT-B-32", "openai") != model_key("ViT-B-32", "laion2b_s34b_b79k")
    assert model_key(name, "laion2b_s34b_b79k") == model_key(name, "")  # tag unused by local-dir
    folder = tmp_path / "copy"
    shutil.copytree(name.removeprefix("local-dir:"), folder)
    assert load_text_tower(f"local-dir:{folder}", "", cache) is None  # other files: no export
    manifest = manifest_path(cache, name, "")
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "trusted": False}))
    try:
        assert load_text_tower(name, "", cache) is None  # a failed verification is not used
    finally:
        manifest.write_text(json.dumps(data))


def test_int8_text_tower_is_verified_before_use(exported):
    from pixseek.models.text_export import export_text_tower
    from pixseek.models.text_tower import TEXT_MIN_COSINE

    clip, _, cache, name = exported
    tower = export_text_tower(clip, name, "", cache, "int8")
    manifest = json.loads(next((cache / "text").glob("*-int8.json")).read_text())
    assert manifest["trusted"] == (manifest["min_cosine"] >= TEXT_MIN_COSINE["int8"])
    assert (tower is not None) == manifest["trusted"]


class CountingText:
    identifier, dim, cache_tag = "fake", 3, "w1-onnx-fp32"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed_texts(self, texts):
        self.calls.append(list(texts))
        return np.array([[len(t), 1.0, 0.5] for t in texts], dtype=np.float32)


def _no_torch_model():
    raise AssertionError("the full model must not load for a text query")


def test_disk_cache_survives_the_process_and_is_keyed(tmp_path):
    path = tmp_path / "cache" / "q.sqlite3"
    text = CountingText()
    first = QueryEncoder(
        _no_torch_model, ("a {}",), load_text=lambda: text, disk_cache=QueryCache(path)
    )
    vector = first.encode_text("dog")
    assert text.calls == [["a dog"]]
    # A new encoder with a new connection (as the next `pixseek search` process): no forward pass.
    again = QueryEncoder(
        _no_torch_model, ("a {}",), load_text=lambda: text, disk_cache=QueryCache(path)
    )
    assert np.array_equal(again.encode_text("dog"), vector) and len(text.calls) == 1
    other_templates = QueryEncoder(
        _no_torch_model, ("the {}",), load_text=lambda: text, disk_cache=QueryCache(path)
    )
    other_templates.encode_text("dog")
    other_templates.encode_text("dog", ensemble=False)
    assert text.calls[1:] == [["the dog"], ["dog"]]
    text.cache_tag = "w2-onnx-fp32"  # other weights
    QueryEncoder(
        _no_torch_model, ("a {}",), load_text=lambda: text, disk_cache=QueryCache(path)
    ).encode_text("dog")
    assert len(text.calls) == 4
    assert cache_key("t", ("a {}",), "dog") != cache_key("t", ("a {}",), "dog ")


class PreparingText(CountingText):
    """A text tower as search.text_prefill drives it: prepared in the child, then used."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail

    def prepare(self, prepack: bool = True) -> None:
        if self.fail:
            raise RuntimeError("graph unreadable")


@pytest.mark.parametrize("child_fails", [False, True], ids=["child-encodes", "child-fails"])
def test_forked_prefill_hands_vectors_over_or_leaves_the_encoding_to_the_parent(
    tmp_path, child_fails
):
    from pixseek.search.text_prefill import prefill_in_child

    path = tmp_path / "q.sqlite3"
    text = PreparingText(fail=child_fails)
    encoder = QueryEncoder(
        _no_torch_model, ("a {}",), load_text=lambda: text, disk_cache=QueryCache(path)
    )
    assert prefill_in_child(encoder, text, ["dog", "cat", "dog"], ensemble=True)
    vectors = [encoder.encode_text(word) for word in ("dog", "cat")]
    # The child's forward passes happened in the child; the parent made none unless it failed.
    assert text.calls == ([["a dog"], ["a cat"]] if child_fails else [])
    expected = QueryEncoder(_no_torch_model, ("a {}",), load_text=CountingText)
    for word, vector in zip(("dog", "cat"), vectors, strict=True):
        assert np.allclose(vector, expected.encode_text(word))
    # Everything asked is cached now: no second child.
    assert prefill_in_child(encoder, text, ["dog"], ensemble=True)
    assert encoder._before_encoding is None


def test_disk_cache_is_bounded_and_never_fails_a_query(tmp_path):
    cache = QueryCache(tmp_path / "q.sqlite3", max_entries=5)
    for i in range(300):
        cache.put(f"k{i}", np.ones(4, dtype=np.float32) * i)
    assert len(cache) <= 5 + 256  # pruned every 256 writes
    assert cache.get("k299") is not None
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not a database" * 100)
    text = CountingText()
    encoder = QueryEncoder(
        _no_torch_model, (), load_text=lambda: text, disk_cache=QueryCache(broken)
    )
    assert encoder.encode_text("cat").shape == (3,)
    assert encoder.encode_text("cow").shape == (3,)  # cache off, search goes on


def test_batcher_shares_forward_passes_and_keeps_rows_apart():
    passes: list[int] = []

    def slow_embed(prompts):
        passes.append(len(prompts))
        time.sleep(0.05)
        return np.array([[float(p.split()[-1]), 1.0] for p in prompts], dtype=np.float32)

    batcher = TextBatcher(slow_embed, max_batch=64, window_s=0.002)
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        results[i] = batcher.embed([f"a {i}", f"b {i}"])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(24))
    for i, rows in results.items():
        assert rows[:, 0].tolist() == [i, i]
    assert sum(passes) == 48 and len(passes) < 12 and max(passes) <= 64
    started = time.perf_counter()
    batcher.embed(["alone 1"])
    assert time.perf_counter() - started < 0.05 + 0.03  # a lone query does not wait the window


def test_batcher_passes_errors_to_every_caller():
    def failing(prompts):
        raise RuntimeError("model fell over")

    batcher = TextBatcher(failing, max_batch=8)
    with pytest.raises(RuntimeError, match="fell over"):
        batcher.embed(["x"])
    with pytest.raises(RuntimeError):
        batcher.embed(["y"])  # the batcher is usable after a failure


def test_unknown_text_backend_is_a_configuration_error(pixseek_env, monkeypatch):
    from pixseek.search.text_encoder import query_encoder

    from pixseek.config import load_settings
    from pixseek.errors import Misconfigured

    monkeypatch.setenv("PIXSEEK_TEXT_BACKEND", "tensorflow")
    with pytest.raises(Misconfigured, match="unknown text backend"):
        query_encoder(load_settings())


_PROBE = """
import json, sys
from pixseek.cli import main
try:
    main(sys.argv[1:])
finally:
    heavy = ("torch", "open_clip", "torchvision", "qdrant_client")
    seen = sorted(m for m in heavy if m in sys.modules)
    from pixseek.models import text_tower
    opened = any(t._session is not None for t in text_tower._towers.values())
    print(json.dumps({"heavy": seen, "session": opened}), file=sys.stderr)
"""


def _search(env: dict, *args: str) -> tuple[list[dict], list[str], bool]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "search", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stderr.strip().splitlines()[-1])
    return json_lines(out.stdout), report["heavy"], report["session"]


def test_text_search_imports_neither_torch_nor_open_clip(cli, pixseek_env, tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("PIXSEEK_BACKEND", "eager")  # no image tower export: faster test
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((COCO / "val2017").glob("*.jpg"))[:12]:
        shutil.copy(path, images / path.name)
    code, _, err = cli("ingest", images, "-c", "photos")
    assert code == 0, err
    # The first text query (in this process, torch loaded) answers with torch and exports.
    code, out, err = cli("search", "a red bus", "-c", "photos", "--json", "-k", "5")
    assert code == 0, err
    first = json_lines(out)
    cache = Path(pixseek_env["PIXSEEK_DATA_DIR"]) / "cache"
    assert list((cache / "text").glob("*-fp32.json"))
    # The weights sit beside the graph, mapped rather than parsed by every search process.
    (graph,) = (cache / "onnx").glob("text-*-fp32-*/text.onnx")
    assert (graph.parent / "text.onnx.data").stat().st_size > graph.stat().st_size
    from pixseek.store.edge import _close_all

    _close_all()  # Qdrant Edge: one process per collection; let the subprocesses open it
    env = {k: v for k, v in os.environ.items() if k.startswith("PIXSEEK_") or k == "HF_HUB_OFFLINE"}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")}, **env}
    # A new process: same query (disk cache: the graph is not even opened), new words through
    # ONNX with a filter; no torch, and qdrant-client only for the filter.
    again, heavy, session = _search(env, "a red bus", "-c", "photos", "--json", "-k", "5")
    assert heavy == [] and not session
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert np.allclose([r["score"] for r in again], [r["score"] for r in first], atol=1e-4)
    # A new query is encoded by a child forked while this process opens the store
    # (search.text_prefill): the parent itself never opens the graph...
    plain, heavy, session = _search(env, "two dogs asleep", "-c", "photos", "--json")
    assert heavy == [] and not session and len(plain) == 10
    # ... and without a disk cache to hand the vector over, it encodes in process, alike.
    no_cache = {**env, "PIXSEEK_QUERY_CACHE_ENTRIES": "0"}
    alone, heavy, session = _search(no_cache, "two dogs asleep", "-c", "photos", "--json")
    assert heavy == [] and session
    assert [r["id"] for r in alone] == [r["id"] for r in plain]
    assert np.allclose([r["score"] for r in alone], [r["score"] for r in plain], atol=1e-5)
    other, heavy, _ = _search(env, "two cats asleep", "-c", "photos", "--json", "-w", "width>=10")
    assert heavy == ["qdrant_client"] and len(other) == 10
    monkeypatch.setenv("PIXSEEK_TEXT_BACKEND", "torch")
    monkeypatch.setenv("PIXSEEK_QUERY_CACHE_ENTRIES", "0")
    code, out, _ = cli("search", "two cats asleep", "-c", "photos", "--json", "-w", "width>=10")
    by_torch = json_lines(out)  # torch and ONNX agree on the scores and the ranking
    assert np.allclose([r["score"] for r in by_torch], [r["score"] for r in other], atol=1e-4)
    scores = [r["score"] for r in other]
    for i, (a, b) in enumerate(zip(by_torch, other, strict=True)):
        gaps = [abs(scores[i] - scores[j]) for j in (i - 1, i + 1) if 0 <= j < len(scores)]
        if min(gaps) > 2e-4:  # ranks closer than float noise may swap
            assert a["id"] == b["id"], i


def test_long_lived_process_exports_in_the_background(pixseek_env, monkeypatch):
    from pixseek.search.text_encoder import query_encoder

    from pixseek.config import load_settings
    from pixseek.models.text_tower import OnnxTextTower

    monkeypatch.setenv("PIXSEEK_BACKEND", "eager")
    monkeypatch.setenv("PIXSEEK_TEXT_BATCH_MAX", "64")
    encoder = query_encoder(load_settings())  # as the API and the worker get it
    first = encoder.encode_text("a dog on a sofa")  # torch answers while the export runs
    deadline = time.monotonic() + 300
    while not isinstance(encoder.text_model, OnnxTextTower):
        assert time.monotonic() < deadline, "the background export never finished"
        time.sleep(0.2)
    encoder.clear_cache()
    by_onnx = encoder.encode_text("a dog on a sofa")
    assert float(first @ by_onnx) >= 0.9999
    assert encoder.batcher is not None  # the new model is micro-batched too
    assert encoder.batcher.embed(["a cat"]).shape == (1, encoder.dim)


def test_background_export_neither_swallows_output_nor_aborts_the_exit(tiny_clip_dir, tmp_path):
    # A short-lived process whose text queries start the background export: torch keeps
    # answering new queries meanwhile (the exporter's process-wide state once broke them), what
    # the main thread prints reaches stdout (sys.stdout is process-wide), and the exit neither
    # aborts in torch (exit 134) nor waits for the export.
    program = (
        "from pixseek.config import load_settings\n"
        "from pixseek.search.text_encoder import query_encoder\n"
        "encoder = query_encoder(load_settings())\n"
        "vectors = [encoder.encode_text(f'a photo number {i}', True) for i in range(40)]\n"
        "print('dim', vectors[-1].shape[0], len(vectors), flush=True)\n"
    )
    env = {
        **os.environ,
        "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
        "PIXSEEK_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
    }
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["dim", "32", "40"]
    assert "Traceback" not in run.stderr
