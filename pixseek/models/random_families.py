"""Tiny random models of every OpenCLIP family pixseek handles, with real tokenizers built locally.

The tokenizer files of SigLIP, SigLIP 2, XLM-R and NLLB models cannot be downloaded here, so
`write_random_family` trains a small tokenizer of the same kind (SentencePiece-style Unigram or
BPE with the same special tokens, built with the `tokenizers` library) on local text, and writes
it in the layout of the real model repositories: `tokenizer.json`, `tokenizer_config.json` and
`special_tokens_map.json` beside `open_clip_config.json` and `open_clip_model.safetensors`, which
is where open_clip's `local-dir:` loader reads them. XLM-R and NLLB text towers are Hugging Face
models: their (tiny) `config.json` sits in a subfolder named like the Hub repo, which the
open_clip config's `hf_model_name` points at. Everything is then loaded by the code users run
(`PIXSEEK_CLIP_MODEL=local-dir:DIR`). Embeddings are random, by construction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from pixseek.models.random_weights import TINY_CLIP

FAMILY_NAMES = ("siglip", "siglip2", "xlm-roberta", "nllb", "mobileclip")
# Directory names as the real repositories are named, so names tell the family as they do there.
DIRECTORY = {
    "siglip": "ViT-tiny-SigLIP",
    "siglip2": "ViT-tiny-SigLIP2",
    "xlm-roberta": "xlm-roberta-tiny-ViT-tiny",
    "nllb": "nllb-clip-tiny",
    "mobileclip": "MobileCLIP-tiny",
}
NLLB_LANGUAGES = ("eng_Latn", "deu_Latn", "jpn_Jpan", "fra_Latn")
VOCAB_SIZE = 1000
TINY_VISION = TINY_CLIP["vision_cfg"]
TINY_TEXT = {"width": 64, "heads": 2, "layers": 2}


def _metaspace_unigram(corpus: list[str], specials: list[str], vocab: int) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    unk = "<unk>"
    trainer = trainers.UnigramTrainer(vocab_size=vocab, special_tokens=specials, unk_token=unk)
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def _metaspace_bpe(corpus: list[str], specials: list[str], vocab: int) -> Any:
    """SentencePiece-BPE's layout (NLLB): '▁'-prefixed words, BPE merges, <unk> fallback."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials)
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def _gemma_bpe(corpus: list[str], specials: list[str], vocab: int) -> Any:
    """Gemma's layout: BPE over '▁'-joined text with byte fallback, no pre-tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab + len(byte_tokens), special_tokens=specials + byte_tokens
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def _template(tokenizer: Any, single: str) -> None:
    from tokenizers import processors

    names = [part for part in single.split() if part != "$A"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(name, tokenizer.token_to_id(name)) for name in names]
    )


def _write_tokenizer(directory: Path, tokenizer: Any, config: dict, special: dict) -> None:
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def build_tokenizer(family: str, directory: Path, corpus: list[str], vocab: int) -> int:
    """Train and write the family's tokenizer into `directory`; returns its vocabulary size."""
    if family == "siglip":  # T5 SentencePiece (c4-en): </s> appended, padded with </s>
        tok = _metaspace_unigram(corpus, ["<pad>", "</s>", "<unk>"], vocab)
        _template(tok, "$A </s>")
        special = {"eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"}
        config = {"tokenizer_class": "T5Tokenizer", "model_max_length": 64, "extra_ids": 0}
    elif family == "siglip2":  # Gemma: <eos> appended, padded with <pad>
        tok = _gemma_bpe(corpus, ["<pad>", "<eos>", "<bos>", "<unk>"], vocab)
        _template(tok, "$A <eos>")
        special = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}  # fmt: skip
        config = {"tokenizer_class": "GemmaTokenizer", "model_max_length": 64}
        config.update(add_bos_token=False, add_eos_token=True, padding_side="right")
    elif family == "xlm-roberta":  # fairseq order: <s> <pad> </s> <unk>, <mask> last
        tok = _metaspace_unigram(corpus, ["<s>", "<pad>", "</s>", "<unk>"], vocab)
        tok.add_special_tokens(["<mask>"])
        _template(tok, "<s> $A </s>")
        special = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}  # fmt: skip
        config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512}
    elif family == "nllb":  # language code first, </s> last (non-legacy NLLB)
        tok = _metaspace_bpe(corpus, ["<s>", "<pad>", "</s>", "<unk>"], vocab)
        tok.add_special_tokens([*NLLB_LANGUAGES, "<mask>"])
        _template(tok, "eng_Latn $A </s>")
        special = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>", "additional_special_tokens": list(NLLB_LANGUAGES)}  # fmt: skip
        config = {"tokenizer_class": "NllbTokenizer", "model_max_length": 1024}
        config.update(src_lang="eng_Latn", legacy_behaviour=False)
    else:
        raise ValueError(f"no locally built tokenizer for family {family!r}")
    _write_tokenizer(directory, tok, config, special)
    return int(tok.get_vocab_size())


def _hf_text_config(family: str, vocab: int) -> Any:
    if family == "xlm-roberta":
        from transformers import XLMRobertaConfig

        return XLMRobertaConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=80, pad_token_id=1, bos_token_id=0,
            eos_token_id=2,
        )  # fmt: skip
    from transformers import M2M100Config

    return M2M100Config(
        vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=80, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2,
    )  # fmt: skip


def model_cfg(family: str, directory: Path, vocab: int) -> dict[str, Any]:
    """The open_clip model config of the tiny model (real configs' keys, tiny sizes)."""
    vision = dict(TINY_VISION)
    if family in ("siglip", "siglip2"):
        text = {
            "context_length": 64,
            "vocab_size": vocab,
            "hf_tokenizer_name": "timm/ViT-B-16-SigLIP2"
            if family == "siglip2"
            else "timm/ViT-B-16-SigLIP",  # fmt: skip
            "tokenizer_kwargs": {"clean": "canonicalize"},
            **TINY_TEXT,
            "no_causal_mask": True,
            "proj_bias": True,
            "pool_type": "last",
            "norm_kwargs": {"eps": 1e-6},
        }
        if family == "siglip2":
            text["act_kwargs"] = {"approximate": "tanh"}
        return {"embed_dim": 32, "init_logit_bias": -10, "custom_text": True, "vision_cfg": vision, "text_cfg": text}  # fmt: skip
    if family == "xlm-roberta":
        text = {
            "hf_model_name": str(directory / "xlm-roberta-base"),
            "hf_tokenizer_name": "xlm-roberta-base",
            "hf_pooler_type": "mean_pooler",
        }
        return {"embed_dim": 32, "vision_cfg": vision, "text_cfg": text}
    if family == "nllb":
        text = {
            "hf_model_name": str(directory / "nllb-200-distilled-600M"),
            "hf_tokenizer_name": "facebook/nllb-200-distilled-600M",
            "hf_proj_type": "linear",
            "hf_pooler_type": "cls_pooler",
        }
        return {"embed_dim": 32, "vision_cfg": vision, "text_cfg": text}
    if family == "mobileclip":  # CLIP BPE tokenizer (built in), non-causal text transformer
        text = {"context_length": 77, "vocab_size": 49408, **TINY_TEXT, "no_causal_mask": True}
        return {"embed_dim": 32, "vision_cfg": vision, "text_cfg": text, "custom_text": True}
    raise ValueError(f"unknown family {family!r}; use one of {', '.join(FAMILY_NAMES)}")


def write_random_family(
    parent: Path, family: str, corpus: Iterable[str], seed: int = 0, vocab: int = VOCAB_SIZE
) -> Path:
    """Write a tiny random model of `family` under `parent`; returns its local-dir directory."""
    from open_clip.model import CLIP, CustomTextCLIP
    from safetensors.torch import save_model

    if family not in FAMILY_NAMES:
        raise ValueError(f"unknown family {family!r}; use one of {', '.join(FAMILY_NAMES)}")
    directory = Path(parent) / DIRECTORY[family]
    directory.mkdir(parents=True, exist_ok=True)
    size = 0
    if family != "mobileclip":
        size = build_tokenizer(family, directory, [line for line in corpus if line.strip()], vocab)
    cfg = model_cfg(family, directory, size)
    if family in ("xlm-roberta", "nllb"):
        folder = Path(cfg["text_cfg"]["hf_model_name"])
        folder.mkdir(exist_ok=True)
        _hf_text_config(family, size).save_pretrained(folder)
    (directory / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}, indent=2)
    )
    torch.manual_seed(seed)
    build = {k: v for k, v in cfg.items() if k != "custom_text"}
    if "hf_model_name" in cfg["text_cfg"]:
        build["text_cfg"] = {**cfg["text_cfg"], "hf_model_pretrained": False}
    custom = cfg.get("custom_text") or "hf_model_name" in cfg["text_cfg"]
    model = (CustomTextCLIP if custom else CLIP)(**build)
    save_model(model, str(directory / "open_clip_model.safetensors"))
    return directory
