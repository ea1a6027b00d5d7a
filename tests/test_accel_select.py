"""`auto` by measurement (pixseek.models.accel_select): the choice, its cache, its candidates.

The selection logic runs on fake timings and fidelities; the candidates' fidelity checks and the
embedder's first-use measurement run on the tiny random CLIP with real images.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixseek.models import accel, accel_select
from pixseek.models.accel_check import Setting
from pixseek.models.accel_select import MachineKey
from pixseek.models.clip import ClipEmbedder, load_clip
from tests.conftest import IMAGENETTE

CPU = torch.device("cpu")
FP32, INT8 = Setting("eager", "fp32"), Setting("onnx", "int8")
BF16, QUANT = Setting("eager", "bf16"), Setting("eager", "int8")
EXACT = accel.Fidelity(1.0, 1.0, 1.0, 10)
KEY = MachineKey("w0", "Test CPU", ("avx2",), 2, 2, "2.0", "1.0", "cpu")


def _fakes(speed: dict[Setting, float], fid: dict[Setting, accel.Fidelity], calls: list):
    def measure(setting: Setting) -> float:
        calls.append(setting)
        if setting not in speed:
            raise RuntimeError(f"{setting.label} cannot run here\nsecond line")
        return speed[setting]

    return measure, lambda setting: fid.get(setting, EXACT)


def test_select_picks_the_fastest_passing_candidate():
    speed = {FP32: 20.0, INT8: 60.0, QUANT: 30.0}
    fid = {INT8: accel.Fidelity(0.9996, 0.9998, 0.95, 10), QUANT: accel.Fidelity(0.9999, 1, 1, 10)}
    chosen, rows = accel_select.select([FP32, INT8, QUANT], *_fakes(speed, fid, []))
    assert chosen == INT8
    by = {r.setting: r for r in rows}
    assert by["onnx int8"].rejected == "" and by["onnx int8"].images_per_s == 60.0
    assert by["eager fp32"].rejected == "slower than onnx int8" and by["eager fp32"].passed


def test_select_rejects_a_fast_unfaithful_candidate():
    speed = {FP32: 20.0, BF16: 140.0, INT8: 60.0, QUANT: 90.0}
    fid = {
        BF16: accel.Fidelity(0.998, 0.9995, 0.99, 10),  # fast, but below 0.999
        QUANT: accel.Fidelity(0.9995, 0.9998, 0.6, 10),  # cosine fine, neighbours reordered
        INT8: accel.Fidelity(0.9992, 0.9997, 0.9, 10),
    }
    chosen, rows = accel_select.select([FP32, BF16, INT8, QUANT], *_fakes(speed, fid, []))
    assert chosen == INT8
    by = {r.setting: r for r in rows}
    assert by["eager bf16"].rejected == "min cosine 0.99800 < 0.999" and not by["eager bf16"].passed
    assert by["eager bf16"].images_per_s == 140.0  # its numbers are kept with the reason
    assert by["eager int8"].rejected.startswith("top-10 overlap 0.600 < 0.8")


def test_select_falls_back_to_fp32_and_records_unavailable_settings():
    speed = {FP32: 20.0, BF16: 140.0}
    fid = {BF16: accel.Fidelity(0.9, 0.95, 0.5, 10)}
    chosen, rows = accel_select.select([FP32, BF16, INT8], *_fakes(speed, fid, []))
    assert chosen == FP32
    by = {r.setting: r for r in rows}
    assert by["onnx int8"].rejected == "unavailable: onnx int8 cannot run here"
    assert by["onnx int8"].images_per_s is None and not by["onnx int8"].passed
    chosen, _ = accel_select.select([FP32, BF16], lambda s: 1 / 0, lambda s: EXACT)
    assert chosen == FP32  # nothing measurable at all: the reference


@pytest.mark.parametrize(
    "change",
    [
        {"weights": "w1"},  # new weights
        {"cpu_flags": ("amx_bf16", "avx2")},  # another CPU
        {"cores": 8},
        {"threads": 1},
        {"torch": "2.1"},
        {"onnxruntime": "1.2"},
    ],
)
def test_a_decision_is_cached_and_measured_again_when_the_key_changes(tmp_path: Path, change):
    calls: list[Setting] = []
    measure, check = _fakes({FP32: 20.0, INT8: 60.0}, {}, calls)
    first, fresh = accel_select.decide(KEY, tmp_path, [FP32, INT8], measure, check, images=24)
    assert fresh and first.chosen == INT8 and len(calls) == 2
    stored = json.loads((tmp_path / "accel" / f"{KEY.digest}.json").read_text())
    assert stored["chosen_label"] == "onnx int8" and stored["key"]["cpu_flags"] == ["avx2"]
    again, fresh = accel_select.decide(KEY, tmp_path, [FP32, INT8], measure, check)
    assert not fresh and again == first and len(calls) == 2  # reused, nothing measured
    other = dataclasses.replace(KEY, **change)
    assert other.digest != KEY.digest
    _, fresh = accel_select.decide(other, tmp_path, [FP32, INT8], measure, check)
    assert fresh and len(calls) == 4
    assert len(accel_select.cached_decisions(tmp_path)) == 2


def test_a_decision_file_for_another_key_is_not_trusted(tmp_path: Path):
    decision, _ = accel_select.decide(KEY, tmp_path, [FP32], lambda s: 1.0, lambda s: EXACT)
    other = dataclasses.replace(KEY, cores=4)
    path = accel_select.decision_path(tmp_path, other)
    path.write_text(json.dumps(decision.to_json()))  # a stale or copied file under this name
    assert accel_select.load_decision(tmp_path, other) is None
    path.write_text("{not json")
    assert accel_select.load_decision(tmp_path, other) is None


CPUINFO = "processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"


@pytest.mark.parametrize(
    ("flags", "bf16"),
    [
        ("fpu sse avx avx2", False),  # AMD EPYC without VNNI / AMX (this development machine)
        ("avx2 avx512f avx512_vnni", False),
        ("avx2 avx512f avx512_vnni avx512_bf16", True),
        ("avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8", True),
        ("avx2 amx_bf16 amx_tile", True),
    ],
)
def test_candidates_follow_the_cpu_flags(tmp_path: Path, flags: str, bf16: bool):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO.format(vendor="X", model="Some CPU @ 2GHz", flags=flags) * 2)
    model, found = accel_select.cpu_info(info)
    assert model == "Some CPU @ 2GHz" and "fpu" not in found and "avx2" in found
    key = accel_select.machine_key("w", CPU, info)
    assert key.cpu_flags == found and key.cores >= 1 and key.torch == torch.__version__
    labels = [s.label for s in accel_select.candidates(key.cpu_flags, onnx=True)]
    assert labels[0] == "eager fp32"
    assert ("eager bf16" in labels) is bf16
    assert {"onnx int8", "onnx fp32", "eager int8", "eager fp32 channels-last"} <= set(labels)
    assert "onnx int8" not in [s.label for s in accel_select.candidates(found, onnx=False)]


def test_this_machine_offers_bf16_only_with_native_support():
    _, flags = accel_select.cpu_info()
    offered = Setting("eager", "bf16") in accel_select.candidates(flags)
    assert offered == bool(accel_select.BF16_FLAGS & set(flags))


# -- on the tiny real model -----------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    paths = sorted(IMAGENETTE.glob("val/*/*.JPEG"))[::300][:12]
    return [Image.open(p).convert("RGB") for p in paths]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("select-cache")  # ONNX graphs shared by this module's tests


@pytest.fixture(scope="module")
def base(tiny_clip_dir: Path, cache: Path) -> ClipEmbedder:
    return load_clip(
        f"local-dir:{tiny_clip_dir}",
        "",
        "cpu",
        backend="eager",
        precision="fp32",
        threads=0,
        channels_last=False,
        cache_dir=cache,
    )


def _auto(base: ClipEmbedder, cache: Path) -> ClipEmbedder:
    spec = accel.AccelSpec(cache_dir=cache)
    return ClipEmbedder(base.model, base.preprocess.transform, base.tokenizer, CPU, "t", spec)


def test_every_candidate_passes_its_fidelity_check_on_the_tiny_model(base, cache, images):
    pixels = accel_select.fidelity_set(torch.stack([base.preprocess(i) for i in images]))
    assert len(pixels) == accel_select.SELECT_IMAGES
    settings = accel_select.candidates(["amx_bf16"])  # every candidate, bf16 weights included
    sweep = accel_select.Sweep(_auto(base, cache), pixels, settings)
    chosen, rows = accel_select.select(settings, sweep.measure, sweep.check)
    assert [r.setting for r in rows] == [s.label for s in settings]
    for row in rows:
        assert row.passed, row
        assert row.min_cosine >= accel_select.SELECT_MIN_COSINE and row.images_per_s > 0
    assert sweep.check(FP32).min_cosine == pytest.approx(1.0)
    assert chosen in settings


def test_auto_measures_on_the_first_images_caches_and_obeys_explicit_settings(
    base, cache, images, caplog
):
    reference = base.embed_images(images)
    model = _auto(base, cache)
    few = model.embed_images(images[:3])  # too few to measure on: exact fp32 meanwhile
    np.testing.assert_allclose(few, reference[:3], atol=1e-6)
    assert model.decision is None
    with caplog.at_level("INFO", logger="pixseek.accel"):
        got = model.embed_images(images)
    decision = model.decision
    assert decision is not None and "inference setting measured" in caplog.text
    chosen = decision.chosen
    assert (model.backend, model.precision) == (chosen.backend, chosen.precision)
    assert model.describe()["chosen_by"] == "measurement"
    assert accel.fidelity(reference, got).min_cosine >= accel_select.SELECT_MIN_COSINE - 1e-4
    assert accel_select.decision_path(cache, decision.key).is_file()

    def no_measuring(self):
        raise AssertionError("a cached decision must not measure again")

    later = _auto(base, cache)  # a later process: the decision comes from the cache
    original = accel_select.Sweep._run
    accel_select.Sweep._run = no_measuring  # type: ignore[method-assign]
    try:
        later.prepare()  # a cached decision builds without waiting for images
        assert later.decision == decision and later.backend == chosen.backend
    finally:
        accel_select.Sweep._run = original  # type: ignore[method-assign]
    explicit = ClipEmbedder(
        base.model,
        base.preprocess.transform,
        base.tokenizer,
        CPU,
        "t",
        accel.AccelSpec("eager", "int8", cache_dir=cache),
    )
    explicit.embed_images(images)
    assert explicit.decision is None and (explicit.backend, explicit.precision) == ("eager", "int8")


def test_a_setting_that_cannot_build_is_rejected_not_fatal(base, tmp_path, images, monkeypatch):
    from pixseek.errors import UserError
    from pixseek.models import onnx_backend

    def broken(*args, **kwargs):
        raise UserError("cannot export the CLIP image tower to ONNX: simulated")

    monkeypatch.setattr(onnx_backend, "onnx_runner", broken)
    model = _auto(base, tmp_path)
    model.embed_images(images)
    assert model.decision is not None and model.backend == "eager"
    by = {c.setting: c for c in model.decision.candidates}
    assert by["onnx int8"].rejected.startswith("unavailable: cannot export")


def test_models_info_shows_the_cached_decision(cli, pixseek_env):
    cache = Path(pixseek_env["PIXSEEK_DATA_DIR"]) / "cache"
    code, out, _ = cli("models", "info")
    assert code == 0 and "no measured decision" in out
    measure, check = _fakes({FP32: 20.0, INT8: 61.5}, {}, [])
    accel_select.decide(KEY, cache, [FP32, INT8], measure, check, images=24)
    code, out, _ = cli("models", "info")
    assert code == 0 and "chosen: onnx int8" in out and "61.5 img/s" in out
    assert "slower than onnx int8" in out and "Test CPU" in out
    code, out, _ = cli("models", "info", "--json")
    assert json.loads(out)[0]["chosen_label"] == "onnx int8"
