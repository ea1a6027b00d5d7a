"""OpenCLIP families (SigLIP, SigLIP 2, XLM-R, NLLB, MobileCLIP) with tiny random models.

Their tokenizers are trained here on coco_mini's captions plus a few German and Japanese ones
(pixseek.models.random_families) and written in the real repositories' layout; the models load
through `local-dir:` like any user's. Rankings are meaningless (random weights): the tests check
what the family changes: tokenizer and token ids, templates, image normalisation, the logit bias,
and that ingest + text + image search run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pixseek.config import Settings, load_settings
from pixseek.errors import Misconfigured
from pixseek.models import families
from pixseek.models.random_families import FAMILY_NAMES, write_random_family
from tests.conftest import COCO, json_lines

pytestmark = pytest.mark.timeout(300)

GERMAN = "Zwei Hunde liegen auf einem Sofa"
JAPANESE = "ソファの上に二匹の犬がいます"
MULTILINGUAL = [
    "Zwei Hunde liegen auf einem Sofa neben einem Fenster.",
    "Ein roter Bus fährt durch eine Straße in der Stadt.",
    "Eine Katze schläft auf einem Bett.",
    "Ein Mann fährt Ski auf einem verschneiten Hang.",
    "ソファの上に二匹の犬がいます。",
    "赤いバスが街の通りを走っています。",
    "猫がベッドの上で寝ています。",
    "雪の斜面でスキーをしている男性。",
]
IMAGE = COCO / "train2017" / "000000030752.jpg"


def corpus() -> list[str]:
    captions = [
        c for line in json_lines((COCO / "labels.jsonl").read_text()) for c in line["captions"]
    ]
    return captions + MULTILINGUAL * 5


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    text = corpus()
    return {name: write_random_family(root, name, text) for name in FAMILY_NAMES}


@pytest.fixture
def env(models, tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    for key in [k for k in os.environ if k.startswith("PIXSEEK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIXSEEK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIXSEEK_DEVICE", "cpu")
    yield {}


def use(monkeypatch, models, name: str) -> str:
    model = f"local-dir:{models[name]}"
    monkeypatch.setenv("PIXSEEK_CLIP_MODEL", model)
    monkeypatch.setenv("PIXSEEK_CLIP_PRETRAINED", "")
    return model


def test_families_are_told_apart_by_config_and_name(models):
    expected = {
        "ViT-B-32": "clip",
        "ViT-B-16-SigLIP": "siglip",
        "ViT-SO400M-16-SigLIP-i18n-256": "siglip-i18n",
        "ViT-B-16-SigLIP2-256": "siglip2",
        "hf-hub:timm/ViT-SO400M-16-SigLIP2-384": "siglip2",  # not cached: from the name
        "xlm-roberta-base-ViT-B-32": "xlm-roberta",
        "nllb-clip-base-siglip": "nllb",
        "MobileCLIP2-S0": "mobileclip",
        "MobileCLIP-S1": "mobileclip",
        **{f"local-dir:{path}": name for name, path in models.items()},
    }
    assert {name: families.detect(name).name for name in expected} == expected


def test_siglip_and_multilingual_towers_embed_bare_text(models):
    default = Settings().prompt_templates
    for name in ("siglip", "siglip2", "xlm-roberta", "nllb"):
        assert families.prompt_templates(f"local-dir:{models[name]}", default) == ()
    assert families.prompt_templates(f"local-dir:{models['mobileclip']}", default) == default
    assert families.prompt_templates("ViT-B-32", default) == default
    mine = ("{} in a photo",)  # set explicitly: kept whatever the family
    assert families.prompt_templates(f"local-dir:{models['siglip']}", mine) == mine


def test_image_normalisation_comes_from_the_family_when_the_config_has_none(models, env):
    from pixseek.models.clip import load_clip

    expected = {
        "siglip": ((0.5,) * 3, (0.5,) * 3),
        "siglip2": ((0.5,) * 3, (0.5,) * 3),
        "xlm-roberta": (families.OPENAI_MEAN, families.OPENAI_STD),
        "mobileclip": ((0.0,) * 3, (1.0,) * 3),
    }
    for name, (mean, std) in expected.items():
        clip = load_clip(f"local-dir:{models[name]}", "", "cpu", backend="eager", precision="fp32")
        assert clip.family.name == name
        normalize = clip.preprocess.transforms[-1]
        assert tuple(normalize.mean) == pytest.approx(mean) and tuple(normalize.std) == pytest.approx(std)  # fmt: skip
    overrides = families.preprocess_overrides("ViT-B-16-SigLIP", "")  # random built-in weights
    assert overrides["image_mean"] == (0.5, 0.5, 0.5) and overrides["image_resize_mode"] == "squash"
    assert families.preprocess_overrides("ViT-B-16-SigLIP", "webli") == {}  # open_clip's own


def test_a_siglip_config_without_its_text_cleaning_is_refused(models, tmp_path):
    from pixseek.models.clip import load_clip

    broken = tmp_path / "ViT-tiny-SigLIP"
    broken.mkdir()
    for item in models["siglip"].iterdir():
        (broken / item.name).symlink_to(item)
    config = json.loads((models["siglip"] / "open_clip_config.json").read_text())
    del config["model_cfg"]["text_cfg"]["tokenizer_kwargs"]
    (broken / "open_clip_config.json").unlink()
    (broken / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(Misconfigured, match="'canonicalize'.*asks for 'whitespace'") as caught:
        load_clip(f"local-dir:{broken}", "", "cpu", backend="eager", precision="fp32")
    assert "\n" not in str(caught.value)


def _ids_reaching_the_tower(monkeypatch, models, name: str, texts: list[str]) -> list[list[int]]:
    from pixseek.search.text_encoder import query_encoder

    use(monkeypatch, models, name)
    encoder = query_encoder(load_settings())
    assert encoder.templates == ()
    seen: list[torch.Tensor] = []
    tower = encoder.model.model.text
    handle = tower.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        for text in texts:
            vector = encoder.encode_text(text)
            assert vector.shape == (32,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    finally:
        handle.remove()
    assert len(seen) == len(texts)  # one forward pass per query: no templates, not cached
    return [row[0].tolist() for row in seen]


@pytest.mark.parametrize("name", ["xlm-roberta", "nllb", "siglip2"])
def test_german_and_japanese_queries_reach_the_text_tower_as_the_tokenizer_ids(
    models, env, monkeypatch, name
):
    from tokenizers import Tokenizer

    reached = _ids_reaching_the_tower(monkeypatch, models, name, [GERMAN, JAPANESE])
    tokenizer = Tokenizer.from_file(str(models[name] / "tokenizer.json"))
    vocab = tokenizer.get_vocab()
    pad = vocab["<pad>"]
    for text, ids in zip([GERMAN, JAPANESE], reached, strict=True):
        cleaned = text.lower() if name == "siglip2" else text  # SigLIP: canonicalized text
        expected = tokenizer.encode(cleaned).ids
        assert ids[: len(expected)] == expected and set(ids[len(expected) :]) <= {pad}
        assert vocab["<unk>"] not in expected  # the words are real tokens, not unknowns
        assert len(expected) > 3
    if name == "nllb":
        assert reached[0][0] == vocab["eng_Latn"] and reached[0][len(tokenizer.encode(GERMAN).ids) - 1] == vocab["</s>"]  # fmt: skip
    if name == "xlm-roberta":
        assert reached[1][0] == vocab["<s>"]


def test_siglip_text_is_lower_cased_without_punctuation(models, env, monkeypatch):
    reached = _ids_reaching_the_tower(
        monkeypatch, models, "siglip", ["A DOG, on a Couch!", "a dog on a couch"]
    )
    assert reached[0] == reached[1] and len(reached[0]) == 64


def test_the_logit_bias_does_not_change_the_cosine_ranking(models):
    import open_clip
    from PIL import Image

    from pixseek.models.clip import load_clip

    clip = load_clip(f"local-dir:{models['siglip']}", "", "cpu", backend="eager", precision="fp32")
    assert clip.model.logit_bias is not None
    images = [Image.open(p).convert("RGB") for p in sorted((COCO / "train2017").glob("*.jpg"))[:12]]
    texts = ["a dog on a couch", "a red bus", "a man skiing"]
    ours = clip.embed_texts(texts) @ clip.embed_images(images).T  # what pixseek ranks by
    tokenizer = open_clip.get_tokenizer(f"local-dir:{models['siglip']}")
    with torch.no_grad():
        pixels = torch.stack([clip.preprocess(image) for image in images])
        image_features, text_features, scale, bias = clip.model(pixels, tokenizer(texts))
        assert float(bias) == pytest.approx(-10.0)  # SigLIP's init_logit_bias
        logits = scale * text_features @ image_features.T + bias
    probabilities = torch.sigmoid(logits).numpy()
    for row in range(len(texts)):
        order = np.argsort(-ours[row], kind="stable")
        assert np.all(np.diff(probabilities[row][order]) <= 1e-7)  # same order, bias or not
        assert np.all(np.diff(logits.numpy()[row][order]) <= 1e-5)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_ingest_text_and_image_search_on_coco(models, env, monkeypatch, tmp_path, name):
    from click.testing import CliRunner

    from pixseek.cli import main

    use(monkeypatch, models, name)
    # The accelerated image path (auto: measured, a lossy choice verified against fp32) on one
    # family keeps the suite short; the others embed with plain PyTorch.
    monkeypatch.setenv("PIXSEEK_BACKEND", "auto" if name == "siglip2" else "eager")
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((COCO / "train2017").glob("*.jpg"))[:16]:
        (folder / path.name).symlink_to(path)

    def run(*args: object) -> str:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    summary = json.loads(run("ingest", folder, "-c", name, "--json"))
    assert summary["added"] == 16 and summary["failed"] == []
    text_hits = [json.loads(line) for line in run("search", GERMAN, "-c", name, "--json", "-k", "5").splitlines()]  # fmt: skip
    assert len(text_hits) == 5 and len({h["id"] for h in text_hits}) == 5
    assert all(-1.0 <= h["score"] <= 1.0 for h in text_hits)
    image_hits = [json.loads(line) for line in run("search", "--image", IMAGE, "-c", name, "--json", "-k", "3").splitlines()]  # fmt: skip
    assert image_hits[0]["source"] == IMAGE.name
    assert image_hits[0]["score"] == pytest.approx(1.0, abs=0.02)  # int8 images within 0.99
    if name == "siglip2":  # the accelerated image path was used, and checked against fp32
        from pixseek.models.registry import load_embedders

        used = load_embedders(load_settings())["clip"].describe()
        assert used["chosen_by"] == "measurement", used
        if used["precision"] in ("int8", "bf16"):
            assert used["verified_against_fp32"] is True, used


def test_pixseek_models_random_family_writes_a_loadable_model(tmp_path):
    from click.testing import CliRunner

    from pixseek.cli import main

    args = ["models", "random-family", tmp_path, "--family", "xlm-roberta"]
    result = CliRunner().invoke(main, [*map(str, args), "--corpus", str(COCO / "labels.jsonl")])
    assert result.exit_code == 0, result.stderr
    model = result.stdout.strip()
    assert model.startswith("local-dir:") and families.detect(model).name == "xlm-roberta"
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {
        p.name for p in Path(model.removeprefix("local-dir:")).iterdir()
    }
    short = tmp_path / "short.txt"
    short.write_text("a dog\n")
    result = CliRunner().invoke(main, [*map(str, args), "--corpus", str(short)])
    assert result.exit_code == 2 and "at least 50" in result.stderr


def test_nllb_queries_start_with_the_configured_language_code(models, env, monkeypatch):
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(models["nllb"] / "tokenizer.json")).get_vocab()
    monkeypatch.setenv("PIXSEEK_TEXT_LANGUAGE", "deu_Latn")
    (german,) = _ids_reaching_the_tower(monkeypatch, models, "nllb", [GERMAN])
    monkeypatch.setenv("PIXSEEK_TEXT_LANGUAGE", "jpn_Jpan")
    (japanese,) = _ids_reaching_the_tower(monkeypatch, models, "nllb", [JAPANESE])
    assert german[0] == vocab["deu_Latn"] and japanese[0] == vocab["jpn_Jpan"]
    from pixseek.search.text_encoder import query_encoder

    monkeypatch.setenv("PIXSEEK_TEXT_LANGUAGE", "xx_Nope")
    with pytest.raises(Misconfigured, match="not a language code"):
        query_encoder(load_settings()).encode_text(GERMAN)
