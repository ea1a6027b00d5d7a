"""CPU cost of each OpenCLIP family at its real size, with random weights (no downloads here).

    python -m bench.families [--models ViT-B-32,ViT-B-16-SigLIP2] [--threads 2] [--repeat 3]

Per model: parameters of the image and text towers, embedding size, milliseconds per image
(batches of 4 at the model's input size, eager fp32) and per text query (one 12-token query
padded to the model's context, eager fp32), the fastest of several runs. The weights are random, so this measures cost only;
quality comes from the published tables cited in the README. XLM-R / NLLB text towers are built
from their published Hugging Face configs (written locally, since the Hub is unreachable). The
machine is shared: compare rows of one run (ratios to ViT-B-32), and read them against the load.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import cpu, load, percentiles, timed, write_results

MODELS = (
    "ViT-B-32",
    "ViT-B-16",
    "ViT-B-16-SigLIP",
    "ViT-B-16-SigLIP2",
    "MobileCLIP-S1",
    "MobileCLIP2-S0",
    "xlm-roberta-base-ViT-B-32",
    "nllb-clip-base",
)
# The published configs of the Hugging Face text towers (xlm-roberta-base; the encoder of
# nllb-200-distilled-600M, whose decoder open_clip drops).
HF_TEXT = {
    "xlm-roberta-base": (
        "XLMRobertaConfig",
        {
            "vocab_size": 250002,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "layer_norm_eps": 1e-5,
        },  # fmt: skip
    ),
    "facebook/nllb-200-distilled-600M": (
        "M2M100Config",
        {
            "vocab_size": 256206,
            "d_model": 1024,
            "encoder_layers": 12,
            "decoder_layers": 1,
            "encoder_attention_heads": 16,
            "decoder_attention_heads": 16,
            "encoder_ffn_dim": 4096,
            "decoder_ffn_dim": 4096,
            "max_position_embeddings": 1024,
            "scale_embedding": True,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },  # fmt: skip
    ),
}


def build(name: str, scratch: Path) -> tuple[Any, dict[str, Any]]:
    import open_clip
    import transformers
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = json.loads(json.dumps(open_clip.get_model_config(name)))
    text = cfg["text_cfg"]
    if "hf_model_name" in text:
        kind, values = HF_TEXT[text["hf_model_name"]]
        folder = scratch / text["hf_model_name"].replace("/", "--")
        getattr(transformers, kind)(**values).save_pretrained(folder)
        text["hf_model_name"], text["hf_model_pretrained"] = str(folder), False
    if "timm_model_name" in cfg["vision_cfg"]:
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    custom = cfg.pop("custom_text", False) or "hf_model_name" in text
    model = (CustomTextCLIP if custom else CLIP)(**cfg).eval()
    return model, cfg


def measure(name: str, threads: int, repeat: int, scratch: Path) -> dict[str, Any]:
    import torch

    from pixseek.models import families

    torch.set_num_threads(threads)
    started = time.perf_counter()
    model, cfg = build(name, scratch)
    built_s = time.perf_counter() - started
    size = cfg["vision_cfg"].get("image_size", 224)
    size = size[0] if isinstance(size, list | tuple) else size
    text = cfg["text_cfg"]
    context = int(text.get("context_length", 77))
    vocab = int(text.get("vocab_size") or getattr(getattr(model, "text", None), "vocab_size", 1000))
    pixels = torch.randn(4, 3, size, size)
    tokens = torch.randint(5, min(vocab, 30000), (1, context))
    tokens[0, 12:] = 1 if "hf_model_name" in text else 0  # a 12-token query, then padding
    with torch.inference_mode():
        model.encode_image(pixels[:2])
        model.encode_text(tokens)
        image_s = timed(lambda: model.encode_image(pixels), repeat)
        query_s = timed(lambda: model.encode_text(tokens), repeat * 3)
        dim = int(model.encode_text(tokens).shape[-1])
    image, query = percentiles(image_s), percentiles(query_s)
    visual = sum(p.numel() for p in model.visual.parameters())
    total = sum(p.numel() for p in model.parameters())
    family = families.detect(name)
    row = {
        "model": name,
        "family": family.title,
        "languages": family.languages,
        "dim": dim,
        "image_size": int(size),
        "context_length": context,
        "image_params_m": round(visual / 1e6, 1),
        "text_params_m": round((total - visual) / 1e6, 1),
        # The fastest run is the one least slowed by the other processes of this shared machine.
        "image_ms": round(min(image_s) * 1000 / len(pixels), 1),
        "query_ms": round(min(query_s) * 1000, 1),
        "image_ms_median": round(image["p50_ms"] / len(pixels), 1),
        "query_ms_median": round(query["p50_ms"], 1),
        "build_s": round(built_s, 1),
        "load_after": load(),
    }
    return row


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    base = next((r for r in rows if r["model"] == "ViT-B-32"), rows[0])
    lines = [
        "# OpenCLIP families: CPU cost with random weights",
        "",
        f"{meta['cpu']['cpu']}, {meta['threads']} torch thread(s), eager fp32, fastest of "
        f"{meta['repeat']} batches of 4 images / {meta['repeat'] * 3} single queries (medians "
        "in the JSON). "
        f"Load average before: {meta['load_before']}, after: {meta['load_after']} (shared "
        "machine: read the ratios).",
        "",
        "| model | family | dim | input | image params (M) | text params (M) | ms / image | x ViT-B-32 | ms / query | x ViT-B-32 |",  # fmt: skip
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['family']} | {r['dim']} | {r['image_size']} px, "
            f"{r['context_length']} tok | {r['image_params_m']} | {r['text_params_m']} | "
            f"{r['image_ms']} | {r['image_ms'] / base['image_ms']:.2f} | {r['query_ms']} | "
            f"{r['query_ms'] / base['query_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--name", default="families")
    args = parser.parse_args()
    meta = {"cpu": cpu(), "threads": args.threads, "repeat": args.repeat, "load_before": load()}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            row = measure(name, args.threads, args.repeat, Path(scratch))
            print(json.dumps(row), flush=True)
            rows.append(row)
    meta["load_after"] = load()
    write_results(args.name, {**meta, "rows": rows}, markdown(rows, meta))


if __name__ == "__main__":
    main()
