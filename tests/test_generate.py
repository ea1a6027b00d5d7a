"""Generation without a broker: diffusers loading, the image cache, job specs, the in-process path.

The pipeline is a tiny randomly initialised Stable Diffusion written to a temp dir and loaded back
through pixseek/models/t2i.py; the CLIP tokenizer is the real one, built from open_clip's BPE file.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from pixseek.worker.images import ImageCache
from pixseek.worker.spec import JobSpec, parse_size

from pixseek.config import load_settings
from pixseek.errors import Misconfigured, UserError
from pixseek.models.t2i import GenerationParams, load_t2i, model_fingerprint
from tests.conftest import COCO, json_lines, run_pixseek

SMALL = GenerationParams("a red bus", steps=2, width=32, height=32)


@pytest.fixture(scope="module")
def mini_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve COCO images with their labels file."""
    folder = tmp_path_factory.mktemp("mini-coco")
    for image in sorted((COCO / "train2017").glob("*.jpg"))[:12]:
        shutil.copy(image, folder / image.name)
    shutil.copy(COCO / "labels.jsonl", folder / "labels.jsonl")
    return folder


def test_tiny_pipeline_generates_reproducible_images(tiny_t2i_dir):
    t2i = load_t2i(str(tiny_t2i_dir), "cpu")
    assert load_t2i(str(tiny_t2i_dir), "cpu") is t2i  # loaded once per process
    assert type(t2i.pipeline).__name__ == "StableDiffusionPipeline"
    steps: list[tuple[int, int]] = []
    first = t2i.generate(SMALL, [1, 2], lambda step, total: steps.append((step, total)))
    assert steps == [(1, 2), (2, 2)]
    assert [g.seed for g in first] == [1, 2] and all(g.image.size == (32, 32) for g in first)
    again = t2i.generate(SMALL, [2])
    pixels = [np.asarray(g.image, dtype=np.int16) for g in (first[1], again[0], first[0])]
    assert np.abs(pixels[0] - pixels[1]).max() <= 2  # same seed, alone or in a batch
    assert np.abs(pixels[0] - pixels[2]).max() > 10  # another seed, another image
    guided = dataclasses.replace(SMALL, guidance=4.0, negative_prompt="blurry")
    assert t2i.generate(guided, [1])[0].image.size == (32, 32)


def test_prompt_and_size_checks(tiny_t2i_dir):
    t2i = load_t2i(str(tiny_t2i_dir), "cpu")
    assert t2i.max_prompt_tokens == 77 and t2i.count_tokens("a photo of a dog") == 7
    with pytest.raises(UserError, match=r"the prompt is 102 tokens long, .* reads at most 77"):
        t2i.check_prompt("dog " * 100)
    with pytest.raises(UserError, match="must be a multiple of 2"):
        t2i.check_size(33, 32)

    def stop(step: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a step callback can abort generation
        t2i.generate(SMALL, [1], stop)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("/nonexistent/sd", "directory /nonexistent/sd does not exist or has no model_index.json"),
        ("pixseek-test/no-such-model", "cannot load text-to-image model 'pixseek-test/no-such"),
    ],
)
def test_unknown_model_is_a_one_line_error(model, message):
    with pytest.raises(Misconfigured, match=message) as info:
        load_t2i(model, "cpu")
    assert "\n" not in str(info.value) and "PIXSEEK_T2I_MODEL" in str(info.value)


def test_model_fingerprint(tiny_t2i_dir):
    assert model_fingerprint("stabilityai/sd-turbo") == "stabilityai/sd-turbo"
    local = model_fingerprint(str(tiny_t2i_dir))
    assert local.startswith(str(tiny_t2i_dir.resolve()) + "@")


def test_cache_key_covers_every_generation_parameter(tmp_path):
    base = ImageCache.key("m", SMALL, 1)
    assert base == ImageCache.key("m", dataclasses.replace(SMALL), 1)
    variants = [
        ImageCache.key("other", SMALL, 1),
        ImageCache.key("m", SMALL, 2),
        *(
            ImageCache.key("m", dataclasses.replace(SMALL, **{name: value}), 1)
            for name, value in [
                ("prompt", "a blue bus"),
                ("negative_prompt", "rain"),
                ("steps", 3),
                ("guidance", 1.5),
                ("width", 64),
                ("height", 64),
            ]
        ),
    ]
    assert len({base, *variants}) == len(variants) + 1
    cache = ImageCache(tmp_path)
    assert cache.get(base) is None and cache.load(base) is None
    from PIL import Image

    path = cache.put(base, Image.new("RGB", (8, 8), "red"), {"seed": 1})
    assert cache.get(base) == path and cache.load(base).getpixel((0, 0)) == (255, 0, 0)
    assert path.with_suffix(".json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_job_spec_validation():
    spec = JobSpec.from_dict({"prompt": "  a dog  ", "collection": "coco", "where": "label=dog"})
    assert spec.prompt == "a dog" and spec.where == ("label=dog",) and spec.seeds == [0, 1, 2, 3]
    assert JobSpec.from_dict(spec.to_dict()) == spec
    settings = dataclasses.replace(load_settings({}), t2i_size=64, t2i_steps=3, t2i_guidance="1.5")
    params = dataclasses.replace(spec, width=96).generation(settings)
    assert (params.width, params.height, params.steps, params.guidance) == (96, 64, 3, 1.5)
    bad = {
        "the prompt is empty": {"prompt": " "},
        "characters long": {"prompt": "x" * 1001},
        "invalid collection name": {"collection": "../etc"},
        "unknown fusion": {"fusion": "max"},
        "n_images must be between 1 and 16": {"n_images": 0},
        "width must be a multiple of 8": {"width": 100},
        "steps must be between 1 and 200": {"steps": 0},
        "alpha must be between 0 and 1": {"alpha": 2},
        "limit must be a whole number": {"limit": 2.5},
        "threshold must be a number": {"threshold": "high"},
        "diversity must be between 0 and 1": {"diversity": 1.5},
        "unknown job field": {"colour": "red"},
    }
    for message, change in bad.items():
        with pytest.raises(UserError, match=message):
            JobSpec.from_dict({"prompt": "a dog", "collection": "coco", **change})
    assert JobSpec("a dog", "coco", n_images=0, fusion="text").validated().n_images == 0
    assert parse_size("512") == (512, 512) and parse_size("768x512") == (768, 512)
    with pytest.raises(UserError, match="not N or WIDTHxHEIGHT"):
        parse_size("big")
    with pytest.raises(UserError, match="PIXSEEK_T2I_GUIDANCE must be a number"):
        spec.generation(dataclasses.replace(settings, t2i_guidance="lots"))


def test_run_job_in_process(cli, pixseek_env, tiny_t2i_dir, mini_coco, monkeypatch):
    from pixseek.worker.job import JobCancelled, run_job

    code, _, err = cli("ingest", mini_coco, "--labels", mini_coco / "labels.jsonl", "-c", "mini")
    assert code == 0, err
    monkeypatch.setenv("PIXSEEK_T2I_MODEL", str(tiny_t2i_dir))
    monkeypatch.setenv("PIXSEEK_T2I_SIZE", "32")
    monkeypatch.setenv("PIXSEEK_T2I_STEPS", "2")
    monkeypatch.setenv("PIXSEEK_T2I_BATCH_SIZE", "2")
    settings = load_settings()
    events: list[tuple[str, dict]] = []
    spec = JobSpec("a dog on a sofa", "mini", n_images=3, limit=5, where=("label=dog",))
    result = run_job(
        settings, spec, "job-1", lambda state, meta: events.append((state, meta))
    ).to_dict()
    states = [state for state, _ in events]
    assert states[0] == "GENERATING" or states[0] == "LOADING"
    assert states[-2:] == ["EMBEDDING", "SEARCHING"]
    batches = [m["batch"] for s, m in events if s == "GENERATING" and m["step"] == 0]
    assert batches[:2] == [2, 1]  # PIXSEEK_T2I_BATCH_SIZE images per pipeline call
    assert result["generated_now"] == 3 and len(result["generated"]) == 3
    assert result["hits"] and all("dog" in h["payload"]["labels"] for h in result["hits"])
    assert len(result["hits"]) <= 5 and result["timings"]["total"] > 0

    cancelled = JobSpec("a cat on a sofa", "mini", n_images=1)
    with pytest.raises(JobCancelled):
        run_job(settings, cancelled, "job-2", cancelled=lambda: True)

    for fusion in ("text", "generated", "text+mean", "weighted"):
        again = run_job(settings, dataclasses.replace(spec, fusion=fusion), "job-3").to_dict()
        assert again["generated_now"] == 0 and again["score_kind"] == "cosine"
        scores = [hit["score"] for hit in again["hits"]]
        assert scores == sorted(scores, reverse=True) and all(-1 <= x <= 1 for x in scores)
    for fusion in ("rrf", "weighted"):  # MMR over fused (rrf) and single-vector candidates
        plain = run_job(settings, dataclasses.replace(spec, fusion=fusion, limit=4), "j6")
        diverse = dataclasses.replace(spec, fusion=fusion, limit=4, diversity=0.9)
        picked = run_job(settings, diverse, "job-6").hits
        assert len(picked) == len(plain.hits) and picked[0].id in {h.id for h in plain.hits}
    strict = run_job(settings, dataclasses.replace(spec, fusion="text", threshold=0.999), "j")
    assert strict.hits == []

    broken = dataclasses.replace(settings, t2i_model="/nonexistent/sd")
    with pytest.raises(Misconfigured, match="does not exist or has no model_index.json"):
        run_job(broken, dataclasses.replace(spec, seed=50), "job-4")
    with pytest.raises(UserError, match="collection 'nope' does not exist"):
        run_job(settings, dataclasses.replace(spec, collection="nope"), "job-5")


def test_search_generate_without_broker(tiny_clip_dir, tiny_t2i_dir, mini_coco, tmp_path):
    env = {
        "PIXSEEK_DATA_DIR": str(tmp_path / "data"),
        "PIXSEEK_CLIP_MODEL": f"local-dir:{tiny_clip_dir}",
        "PIXSEEK_T2I_MODEL": str(tiny_t2i_dir),
        "PIXSEEK_T2I_SIZE": "32",
        "PIXSEEK_T2I_STEPS": "2",
        "PIXSEEK_BROKER_URL": "",
        "OMP_NUM_THREADS": "1",
    }
    done = run_pixseek(["ingest", mini_coco, "-c", "mini"], env)
    assert done.returncode == 0, done.stderr
    args = ["search", "a", "dog", "-c", "mini", "--generate", "--n-images", "2", "--seed", "3"]
    first = run_pixseek([*args, "--json", "-k", "4"], env)
    assert first.returncode == 0, first.stderr
    hits = json_lines(first.stdout)
    assert len(hits) == 4 and [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert "pixseek: generating" in first.stderr and "pixseek: searching" in first.stderr
    paths = [
        line.split(": ", 2)[2] for line in first.stderr.splitlines() if "generated (seed" in line
    ]
    assert len(paths) == 2 and all(Path(p).is_file() for p in paths)
    assert all(Path(p).is_relative_to(tmp_path / "data" / "cache") for p in paths)

    page = tmp_path / "page.html"
    second = run_pixseek([*args, "--fusion", "text+mean", "--html", page], env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("(cached)") == 2 and "text+mean fusion" in second.stdout
    assert "pixseek: generating" not in second.stderr and page.read_text().count("<figure>") >= 3
