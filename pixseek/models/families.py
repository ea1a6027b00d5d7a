"""Which OpenCLIP model family a PIXSEEK_CLIP_MODEL is, and what that changes for pixseek.

open_clip builds every family behind one API, but they differ in what the caller must get right:

| family | tokenizer (open_clip) | text cleaning | prompt templates | image normalisation |
|---|---|---|---|---|
| CLIP | CLIP byte-level BPE, 77 tokens | lower case | CLIP's ensemble | OpenAI mean/std, bicubic |
| SigLIP | SentencePiece (T5 / mC4), 64 tokens | lower case, no punctuation | none | 0.5/0.5, bicubic, squash |
| SigLIP 2 | Gemma SentencePiece, 64 tokens | lower case, no punctuation | none | 0.5/0.5, bicubic, squash |
| XLM-R CLIP | XLM-RoBERTa SentencePiece | whitespace | none (any language) | OpenAI mean/std |
| NLLB-CLIP | NLLB SentencePiece + language code | whitespace | none (any language) | OpenAI mean/std |
| MobileCLIP | CLIP BPE, 77 tokens, non-causal text | lower case | CLIP's ensemble | 0/1, bilinear |

SigLIP-style towers are trained on bare lower-cased alt-text, and their papers/model cards embed
queries without CLIP's "a photo of a {}." ensemble, so the default templates are dropped for them
(templates set explicitly are kept). The text cleaning itself stays open_clip's, read from the
model's own config (`tokenizer_kwargs.clean`); this module only checks that a SigLIP config asks
for it. Image normalisation comes from the model config (`preprocess_cfg`, or the pretrained tag);
a config without one (random weights, a hand-written local-dir) gets the family's values instead
of CLIP's. Logit scale and SigLIP's logit bias are a positive scale and a shift of the cosine:
ranking by cosine of unit vectors (what Qdrant does) orders hits exactly as the model's logits or
sigmoid probabilities would, so pixseek stores unit vectors and reports cosines for every family;
only absolute score levels (thresholds) differ between families.

Torch-free: the config is read from JSON (open_clip's bundled model_configs, a local-dir, or the
HF cache for hf-hub: names) without importing open_clip or torch.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("pixseek.families")

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_CLIP_IMAGE = {"mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic", "resize_mode": "shortest"}  # fmt: skip
_SIGLIP_IMAGE = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bicubic", "resize_mode": "squash"}  # fmt: skip
_MOBILECLIP_IMAGE = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "interpolation": "bilinear", "resize_mode": "shortest"}  # fmt: skip


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    tokenizer: str  # what kind of tokenizer the model's text tower reads
    templates: bool  # CLIP-style prompt ensembling applies
    languages: str
    image: dict[str, Any] = field(default_factory=dict)  # preprocess defaults (open_clip keys)
    clean: str | None = None  # the text cleaning the config must ask for, None = any
    # Whether pixseek.models.text_tower can run the text path without torch (CLIP BPE + causal
    # CLIP text transformer only, today); others embed text queries with torch.
    torch_free_text: bool = False


CLIP = Family("clip", "CLIP", "CLIP BPE", True, "English", _CLIP_IMAGE, torch_free_text=True)
FAMILIES: dict[str, Family] = {
    "clip": CLIP,
    "siglip": Family(
        "siglip", "SigLIP", "SentencePiece (T5)", False, "English", _SIGLIP_IMAGE, "canonicalize"
    ),  # fmt: skip
    "siglip-i18n": Family(
        "siglip-i18n",
        "SigLIP i18n",
        "SentencePiece (mC4)",
        False,
        "multilingual",
        _SIGLIP_IMAGE,
        "canonicalize",
    ),  # fmt: skip
    "siglip2": Family(
        "siglip2",
        "SigLIP 2",
        "SentencePiece (Gemma)",
        False,
        "multilingual",
        _SIGLIP_IMAGE,
        "canonicalize",
    ),  # fmt: skip
    "xlm-roberta": Family(
        "xlm-roberta",
        "XLM-RoBERTa CLIP",
        "SentencePiece (XLM-R)",
        False,
        "multilingual (100 languages)",
        _CLIP_IMAGE,
    ),  # fmt: skip
    "nllb": Family(
        "nllb",
        "NLLB-CLIP",
        "SentencePiece (NLLB) + language code",
        False,
        "multilingual (200 languages)",
        _CLIP_IMAGE,
    ),  # fmt: skip
    "mobileclip": Family(
        "mobileclip", "MobileCLIP", "CLIP BPE", True, "English", _MOBILECLIP_IMAGE
    ),  # fmt: skip
}


def _builtin_dir() -> Path | None:
    spec = importlib.util.find_spec("open_clip")  # finds the package without running it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model_configs"
        if path.is_dir():
            return path
    return None


@functools.lru_cache(maxsize=64)
def _read_config(model_name: str, stamp: float) -> dict[str, Any] | None:
    if model_name.startswith(LOCAL_DIR):
        path: Path | None = (
            Path(model_name[len(LOCAL_DIR) :]).expanduser() / "open_clip_config.json"
        )
    elif model_name.startswith(HF_HUB):
        path = _hub_cached(model_name[len(HF_HUB) :])
    else:
        folder = _builtin_dir()
        path = folder / f"{model_name}.json" if folder else None
        if path is not None and path.is_file():
            try:
                return {"model_cfg": json.loads(path.read_text()), "preprocess_cfg": {}}
            except (OSError, ValueError):
                return None
    try:
        data = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _hub_cached(repo: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo.split("@")[0], "open_clip_config.json")
    except Exception:  # no huggingface_hub, a malformed repo id: detect from the name alone
        return None
    return Path(found) if isinstance(found, str) else None


def model_config(model_name: str) -> dict[str, Any] | None:
    """{"model_cfg": ..., "preprocess_cfg": ...} of this model, when it can be read offline."""
    stamp = 0.0
    if model_name.startswith(LOCAL_DIR):
        try:  # a rewritten config is read again
            path = Path(model_name[len(LOCAL_DIR) :]).expanduser() / "open_clip_config.json"
            stamp = path.stat().st_mtime
        except OSError:
            pass
    return _read_config(model_name, stamp)


def detect(model_name: str, config: dict[str, Any] | None = None) -> Family:
    """The family of `model_name`, from its config when readable, else from the name."""
    if config is None:
        config = model_config(model_name)
    cfg = (config or {}).get("model_cfg") or {}
    text = cfg.get("text_cfg") or {}
    vision = cfg.get("vision_cfg") or {}
    hf_text = str(text.get("hf_model_name") or "").lower()
    hf_tok = str(text.get("hf_tokenizer_name") or "").lower()
    name = model_name.lower()
    words = " ".join((name, hf_text, hf_tok))
    if "nllb" in hf_text or "nllb" in hf_tok or (not hf_text and "nllb-clip" in name):
        return FAMILIES["nllb"]
    if "xlm-roberta" in hf_text or (not hf_text and "xlm-roberta" in name):
        return FAMILIES["xlm-roberta"]
    siglip = "siglip" in words or ("init_logit_bias" in cfg and text.get("pool_type") == "last")
    if siglip:
        if "siglip2" in words or int(text.get("vocab_size") or 0) == 256000:
            return FAMILIES["siglip2"]
        if "i18n" in words or int(text.get("vocab_size") or 0) == 250000:
            return FAMILIES["siglip-i18n"]
        return FAMILIES["siglip"]
    timm_name = str(vision.get("timm_model_name") or "").lower()
    if "mobileclip" in name or timm_name.startswith("fastvit_mci"):
        return FAMILIES["mobileclip"]
    return CLIP


def prompt_templates(model_name: str, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The templates text queries use: the configured ones, unless they are the CLIP defaults
    and the family embeds bare text (SigLIP, multilingual towers)."""
    from pixseek.config import Settings

    family = detect(model_name)
    if family.templates or tuple(configured) != Settings().prompt_templates:
        return tuple(configured)
    return ()


def check_config(model_name: str, config: dict[str, Any] | None) -> str | None:
    """Why this config would tokenize wrongly for its family (None when it is consistent)."""
    family = detect(model_name, config)
    if family.clean is None or config is None:
        return None
    text = (config.get("model_cfg") or {}).get("text_cfg") or {}
    clean = (text.get("tokenizer_kwargs") or {}).get("clean", "whitespace")
    if clean != family.clean:
        return (
            f"{family.title} text must be cleaned with {family.clean!r} (lower case, no "
            f"punctuation), but the model config asks for {clean!r}; add "
            f'"tokenizer_kwargs": {{"clean": "{family.clean}"}} to its text_cfg'
        )
    return None


def preprocess_overrides(model_name: str, pretrained: str) -> dict[str, Any]:
    """create_model_and_transforms keywords filling what the model config leaves to CLIP's
    defaults: a local-dir or hf-hub config without preprocess_cfg values, or a built-in name
    without a pretrained tag. A pretrained tag brings open_clip's own values: nothing to add."""
    schema = model_name.startswith((LOCAL_DIR, HF_HUB))
    if not schema and pretrained:
        return {}
    config = model_config(model_name)
    given = dict((config or {}).get("preprocess_cfg") or {})
    family = detect(model_name, config)
    keys = {"mean": "image_mean", "std": "image_std"}
    keys.update(interpolation="image_interpolation", resize_mode="image_resize_mode")
    return {arg: family.image[key] for key, arg in keys.items() if key not in given}


def set_text_language(embedder: Any, language: str) -> None:
    """Make an NLLB-CLIP embedder's tokenizer start queries with `language` (e.g. deu_Latn).

    open_clip's HFTokenizer.set_language calls set_src_lang_special_tokens, which transformers 5
    undoes on the next call (it re-applies `src_lang`), so the `src_lang` property is set.
    """
    from pixseek.errors import Misconfigured

    family = getattr(embedder, "family", CLIP)
    language = language.strip()
    if family.name != "nllb":
        if language:
            log.info("PIXSEEK_TEXT_LANGUAGE applies to NLLB-CLIP only; %s ignores it", family.title)
        return
    language = language or "eng_Latn"  # one embedder per process: an unset language resets it
    hf = getattr(getattr(embedder, "tokenizer", None), "tokenizer", None)
    ids = hf.convert_tokens_to_ids([language]) if hf is not None else [None]
    if hf is None or ids[0] in (None, hf.unk_token_id):
        raise Misconfigured(
            f"{language!r} is not a language code of this NLLB tokenizer; set "
            "PIXSEEK_TEXT_LANGUAGE to a code such as eng_Latn, deu_Latn or jpn_Jpan"
        )
    hf.src_lang = language


def describe(model_name: str) -> dict[str, Any]:
    """The family facts for `pixseek models`-style listings and logs."""
    family = detect(model_name)
    return {
        "family": family.title,
        "tokenizer": family.tokenizer,
        "languages": family.languages,
        "prompt_templates": family.templates,
        "torch_free_text": family.torch_free_text,
    }
