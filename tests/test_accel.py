"""Inference settings: every back-end x precision keeps CLIP image embeddings faithful to fp32.

A dozen real images through the tiny random CLIP, each setting compared with eager fp32: min
cosine (the criterion, >= 0.99), top-5 retrieval overlap, batch-size consistency. Plus the
settings plumbing: validation errors, `auto` resolution, the fp32 guard, the numpy preprocess.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixseek.errors import UserError
from pixseek.models import accel
from pixseek.models.clip import load_clip
from tests.conftest import COCO, IMAGENETTE

CPU = torch.device("cpu")
LOSSLESS = 0.9999  # fp32 re-implementations (jit, ONNX, channels-last): only rounding differs


@pytest.fixture(scope="module")
def check_images() -> list[Image.Image]:
    paths = sorted(IMAGENETTE.glob("val/*/*.JPEG"))[::400][:9] + sorted(COCO.rglob("*.jpg"))[:3]
    assert len(paths) == 12
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def _load(model_dir: Path, cache: Path, backend: str, precision: str, **extra):
    return load_clip(
        f"local-dir:{model_dir}",
        "",
        "cpu",
        backend=backend,
        precision=precision,
        threads=extra.get("threads", 0),
        channels_last=extra.get("channels_last", False),
        cache_dir=cache,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accel-cache")


@pytest.fixture(scope="module")
def reference(tiny_clip_dir: Path, cache: Path, check_images) -> tuple[np.ndarray, np.ndarray]:
    """fp32 eager image embeddings, and text queries to retrieve them with."""
    model = _load(tiny_clip_dir, cache, "eager", "fp32")
    queries = model.embed_texts(["a dog", "a church", "a fish", "a truck", "a parachute"])
    return model.embed_images(check_images), queries


def _compiler_missing() -> bool:
    return not any(shutil.which(cc) for cc in ("c++", "g++", "clang++"))


SETTINGS = [
    ("eager", "int8", {}),
    ("eager", "bf16", {}),
    ("eager", "fp32", {"channels_last": True}),
    ("eager", "fp32", {"threads": 1}),
    ("jit", "fp32", {}),
    ("jit", "int8", {}),
    ("onnx", "fp32", {}),
    ("onnx", "int8", {}),
    ("onnx", "int8", {"threads": 1}),
    pytest.param(
        "compile",
        "fp32",
        {},
        marks=pytest.mark.skipif(
            _compiler_missing(), reason="torch.compile (inductor) on CPU needs a C++ compiler"
        ),
    ),
]


@pytest.mark.parametrize(("backend", "precision", "extra"), SETTINGS)
def test_setting_is_faithful_to_fp32(
    tiny_clip_dir, cache, check_images, reference, backend, precision, extra
):
    threads = torch.get_num_threads()
    try:
        model = _load(tiny_clip_dir, cache, backend, precision, **extra)
        assert (model.backend, model.precision) == (backend, precision)
        images, queries = reference
        got = model.embed_images(check_images)
        alone = model.embed_images(check_images[:5])  # another batch size, same graph
    finally:
        torch.set_num_threads(threads)
    assert got.shape == images.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    result = accel.fidelity(images, got, k=5)
    text = accel.topk_overlap(images, got, queries, k=5)
    floor = accel.FIDELITY_MIN_COSINE if precision in ("int8", "bf16") else LOSSLESS
    assert result.min_cosine >= floor, result
    assert result.topk_overlap >= 0.8 and text >= 0.8, (result, text)
    low, _ = accel.cosine_stats(got[:5], alone)
    assert low >= 0.999  # int8 quantises activations per batch: close, not bit-equal


def test_auto_on_cpu_is_measured_and_a_lossy_choice_is_verified(
    tiny_clip_dir, cache, check_images, reference
):
    model = _load(tiny_clip_dir, cache, "auto", "auto")
    # Before any image: the assumption (onnx int8); the first batch measures (accel_select).
    assert (model.backend, model.precision, model.resolved.guarded) == ("onnx", "int8", True)
    got = model.embed_images(check_images)
    assert model.decision is not None and model.describe()["chosen_by"] == "measurement"
    chosen = model.decision.chosen
    assert (model.backend, model.precision) == (chosen.backend, chosen.precision)
    assert accel.fidelity(reference[0], got).min_cosine >= accel.FIDELITY_MIN_COSINE
    assert len(list((cache / "accel").glob("*.json"))) == 1
    if accel.is_lossy(model.precision, CPU):  # the Guarded fp32 check still runs on it
        assert model.describe()["verified_against_fp32"] is True
        verdicts = list((cache / "fidelity").glob(f"*-{model.backend}-{model.precision}.json"))
        assert len(verdicts) == 1 and json.loads(verdicts[0].read_text())["trusted"] is True


def test_resolution_rules(monkeypatch):
    cuda = torch.device("cuda")
    assert accel.resolve(accel.AccelSpec(), cuda) == accel.Resolved("eager", "fp16", False)
    assert accel.resolve(accel.AccelSpec(precision="int8"), CPU).guarded is False
    jit = accel.resolve(accel.AccelSpec(backend="jit"), CPU)
    assert jit == accel.Resolved("jit", "int8", True)  # fastest for the backend, verified
    explicit = accel.AccelSpec(backend="eager", precision="fp32")
    assert accel.resolve(explicit, CPU) == accel.Resolved("eager", "fp32", False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    assert accel.resolve(accel.AccelSpec(), CPU) == accel.Resolved("eager", "int8", True)
    with pytest.raises(UserError, match="needs onnxruntime"):
        accel.resolve(accel.AccelSpec(backend="onnx"), CPU)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (accel.AccelSpec(backend="tensorrt"), "unknown inference backend 'tensorrt'"),
        (accel.AccelSpec(precision="int4"), "unknown precision 'int4'"),
        (accel.AccelSpec(precision="fp16"), "fp16 is for CUDA"),
        (accel.AccelSpec(backend="compile", precision="int8"), "does not support precision int8"),
        (accel.AccelSpec(backend="onnx", precision="bf16"), "use one of int8, fp32"),
        (accel.AccelSpec(threads=-1), "threads must be"),
    ],
)
def test_bad_settings_are_one_line_user_errors(spec, fragment):
    with pytest.raises(UserError, match=fragment) as info:
        accel.resolve(spec, CPU)
    assert "\n" not in str(info.value)


def test_bad_backend_from_environment_fails_the_cli_cleanly(cli, pixseek_env, monkeypatch):
    monkeypatch.setenv("PIXSEEK_BACKEND", "tpu")
    code, _, err = cli("ingest", COCO, "-c", "x")
    assert code == 2 and "unknown inference backend 'tpu'" in err
    assert "Traceback" not in err


def test_settings_fields_come_from_the_environment():
    from pixseek.config import load_settings

    env = {"PIXSEEK_BACKEND": "onnx", "PIXSEEK_PRECISION": "fp32", "PIXSEEK_THREADS": "1"}
    settings = load_settings({**env, "PIXSEEK_CHANNELS_LAST": "true"})
    assert (settings.backend, settings.precision, settings.threads) == ("onnx", "fp32", 1)
    assert settings.channels_last is True
    assert load_settings({}).backend == "auto" and load_settings({}).precision == "auto"


def _runner(scale: float):
    def run(pixels: torch.Tensor) -> torch.Tensor:
        flat = pixels.flatten(1)[:, :16]
        return flat + scale * torch.flip(flat, dims=[1])

    return run


def test_guard_falls_back_to_fp32_when_the_fast_path_drifts(tmp_path: Path):
    pixels = torch.randn(12, 3, 8, 8)
    verdict = tmp_path / "v.json"
    guard = accel.Guarded(_runner(2.0), _runner(0.0), verdict)
    np.testing.assert_array_equal(guard(pixels).numpy(), _runner(0.0)(pixels).numpy())
    assert guard.trusted is False and json.loads(verdict.read_text())["trusted"] is False
    again = accel.Guarded(_runner(2.0), _runner(0.0), verdict)  # a later process
    assert again.trusted is False
    np.testing.assert_array_equal(again(pixels[:3]).numpy(), _runner(0.0)(pixels[:3]).numpy())


def test_guard_trusts_after_enough_matching_images(tmp_path: Path):
    pixels = torch.randn(3, 3, 8, 8)
    guard = accel.Guarded(_runner(1e-4), _runner(0.0), tmp_path / "v.json")
    for _ in range(2):
        guard(pixels)
    assert guard.trusted is None and guard.checked == 6  # not enough evidence yet
    guard(pixels)
    assert guard.trusted is True and guard.checked == accel.GUARD_IMAGES


def test_fast_preprocess_is_bit_identical_to_open_clip(tiny_clip_dir, tmp_path, check_images):
    import open_clip

    _, _, original = open_clip.create_model_and_transforms(f"local-dir:{tiny_clip_dir}")
    model = _load(tiny_clip_dir, tmp_path, "eager", "fp32")
    extra = [Image.new("L", (40, 30), 9), Image.new("RGBA", (20, 50), (1, 2, 3, 4))]
    for image in [*check_images, *extra]:
        assert torch.equal(model.preprocess(image), original(image))


def test_topk_overlap_metric():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(20, 8))
    assert accel.topk_overlap(base, base, k=5) == 1.0
    assert accel.topk_overlap(base, rng.normal(size=(20, 8)), k=5) < 0.6
    low, mean = accel.cosine_stats(base, -base)
    assert low == pytest.approx(-1.0) and mean == pytest.approx(-1.0)


def test_auto_falls_back_to_eager_when_onnx_export_fails(
    tiny_clip_dir, tmp_path, check_images, reference, monkeypatch
):
    from pixseek.models import onnx_backend
    from pixseek.models.clip import ClipEmbedder

    def broken(*args, **kwargs):
        raise UserError("cannot export the CLIP image tower to ONNX: simulated")

    monkeypatch.setattr(onnx_backend, "onnx_runner", broken)
    base = _load(tiny_clip_dir, tmp_path, "eager", "fp32")
    spec = accel.AccelSpec(precision="int8", cache_dir=tmp_path)  # auto backend: onnx int8
    model = ClipEmbedder(base.model, base.preprocess.transform, base.tokenizer, CPU, "t", spec)
    got = model.embed_images(check_images)
    assert (model.backend, model.precision) == ("eager", "int8")
    assert accel.fidelity(reference[0], got).passes()
    explicit = ClipEmbedder(
        base.model, base.preprocess.transform, base.tokenizer, CPU, "t", accel.AccelSpec("onnx")
    )
    with pytest.raises(UserError, match="simulated"):
        explicit.embed_images(check_images)


def test_loading_without_random_init_gives_the_checkpoint_exactly(tiny_clip_dir, tmp_path):
    import open_clip

    reference, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tiny_clip_dir}")
    model = _load(tiny_clip_dir, tmp_path, "eager", "fp32")
    expected = reference.state_dict()
    for name, tensor in model.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert torch.nn.init.normal_.__name__ == "normal_"  # restored after the load


def test_text_without_padding_matches_open_clip(tiny_clip_dir, tmp_path):
    model = _load(tiny_clip_dir, tmp_path, "eager", "fp32")
    assert model._trim_text  # open_clip's CLIP with a causal text mask
    texts = ["a", "a photo of a dog.", "an image of " + "very " * 30 + "long text", "{}"]
    with torch.inference_mode():
        full = model.model.encode_text(model.tokenizer(texts)).float()
    full = (full / full.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(model.embed_texts(texts), full, atol=1e-5)
