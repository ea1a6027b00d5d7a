"""Inference back-ends for the CLIP image tower, chosen by `backend` x `precision` settings.

Every back-end is a callable `pixels (N, 3, H, W) float32 CPU tensor -> features (N, D) float32`
(unnormalised), built once per process from the loaded open_clip model:

  eager    the PyTorch module itself (fp32; fp16/bf16 weights on CUDA; bf16 on CPU = a copy of
           the tower with weights AND input in bf16, run by oneDNN: fast with AMX-BF16 or
           AVX512-BF16, emulated and slow without; int8 = torch dynamic quantisation of the MLP
           Linear layers, CPU only)
  jit      torch.jit.trace + freeze + optimize_for_inference (fp32, int8; fp16 on CUDA)
  compile  torch.compile (inductor); batches are padded to the first size seen, so the last,
           shorter batch of a run does not trigger a recompilation (fp32, bf16 = autocast on
           CPU; fp16 on CUDA)
  onnx     ONNX Runtime on an exported graph cached on disk (fp32, int8 = ORT dynamic
           quantisation of every MatMul, CPU; fp32/fp16 with the CUDA provider)

`resolve` turns `auto` into an assumed setting: on CUDA eager fp16; on CPU onnx int8 (eager int8
without onnxruntime). On CPU with backend AND precision `auto`, the embedder replaces that
assumption by a measurement on the first real images (pixseek.models.accel_select: the fastest
candidate faithful to fp32 on this machine, cached per model and machine). A lossy automatic
choice is verified on the
first real images it embeds against the fp32 model (min cosine >= FIDELITY_MIN_COSINE); if it
falls short, the embedder switches to fp32 for good and says so. The verdict is stored per model
in the cache directory, so later processes skip the check.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pixseek.errors import UserError

BACKENDS = ("auto", "eager", "jit", "compile", "onnx")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
FIDELITY_MIN_COSINE = 0.99
GUARD_IMAGES = 8  # images compared against fp32 before an automatic lossy choice is trusted

# What each back-end can run, per device type, fastest first: `precision = auto` takes the first
# (bench/results/accel.md), verified against fp32 when it is lossy.
SUPPORTED: dict[tuple[str, str], tuple[str, ...]] = {
    ("eager", "cpu"): ("int8", "fp32", "bf16"),
    ("eager", "cuda"): ("fp16", "fp32", "bf16"),
    ("jit", "cpu"): ("int8", "fp32"),
    ("jit", "cuda"): ("fp16", "fp32"),
    ("compile", "cpu"): ("fp32", "bf16"),
    ("compile", "cuda"): ("fp16", "fp32", "bf16"),
    ("onnx", "cpu"): ("int8", "fp32"),
    ("onnx", "cuda"): ("fp16", "fp32"),
}

Runner = Callable[[torch.Tensor], torch.Tensor]
log = logging.getLogger("pixseek.accel")


@dataclass(frozen=True)
class AccelSpec:
    """The requested settings, before `auto` is resolved."""

    backend: str = "auto"
    precision: str = "auto"
    threads: int = 0  # intra-op threads for torch and ONNX Runtime; 0 = library default
    channels_last: bool = False
    cache_dir: Path | None = None  # where exported ONNX graphs and fidelity verdicts live


@dataclass(frozen=True)
class Resolved:
    backend: str
    precision: str
    guarded: bool  # chosen automatically and lossy: verify against fp32 before trusting it


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(spec: AccelSpec, device: torch.device) -> Resolved:
    """Validate the settings and turn `auto` into a concrete back-end and precision."""
    backend, precision = spec.backend.strip().lower(), spec.precision.strip().lower()
    if backend not in BACKENDS:
        raise UserError(
            f"unknown inference backend {spec.backend!r}; use one of {', '.join(BACKENDS)} "
            "(PIXSEEK_BACKEND)"
        )
    if precision not in PRECISIONS:
        raise UserError(
            f"unknown precision {spec.precision!r}; use one of {', '.join(PRECISIONS)} "
            "(PIXSEEK_PRECISION)"
        )
    if spec.threads < 0:
        raise UserError("threads must be 0 (library default) or a positive number")
    kind = "cuda" if device.type == "cuda" else "cpu"
    if backend == "onnx" and not onnxruntime_available():
        raise UserError(
            "backend onnx needs onnxruntime, which is not installed; "
            "pip install onnxruntime (or onnxruntime-gpu), or set PIXSEEK_BACKEND=eager"
        )
    if backend == "auto":
        if kind == "cuda":
            backend = "eager"
        elif precision in ("auto", "int8", "fp32") and onnxruntime_available():
            backend = "onnx"
        else:
            backend = "eager"
    if precision == "auto":
        precision = SUPPORTED[(backend, kind)][0]
    allowed = SUPPORTED[(backend, kind)]
    if precision not in allowed:
        hint = " (fp16 is for CUDA GPUs)" if precision == "fp16" else ""
        raise UserError(
            f"backend {backend} on {kind} does not support precision {precision}{hint}; "
            f"use one of {', '.join(allowed)}"
        )
    if backend == "onnx" and kind == "cuda":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise UserError(
                "backend onnx on CUDA needs onnxruntime-gpu (CUDAExecutionProvider is missing); "
                "pip install onnxruntime-gpu, or use PIXSEEK_BACKEND=eager on GPUs"
            )
    guarded = is_lossy(precision, device) and spec.precision.strip().lower() == "auto"
    return Resolved(backend, precision, guarded)


def is_lossy(precision: str, device: torch.device) -> bool:
    """Whether a precision changes the vectors beyond float rounding (then fp32 verifies it)."""
    return precision in ("int8", "bf16") or (precision == "fp16" and device.type == "cpu")


def bf16_weights(resolved: Resolved, device: torch.device) -> bool:
    """eager bf16 on CPU: the image tower is copied to bf16 (weights and input), no autocast."""
    return device.type == "cpu" and resolved.backend == "eager" and resolved.precision == "bf16"


def model_dtype(resolved: Resolved, device: torch.device) -> torch.dtype:
    """The dtype the open_clip model is created in (on CPU always fp32: eager bf16 copies the
    image tower to bf16, compile bf16 runs under autocast)."""
    if device.type == "cuda" and resolved.precision == "fp16":
        return torch.float16
    if device.type == "cuda" and resolved.precision == "bf16":
        return torch.bfloat16
    return torch.float32


def apply_threads(threads: int) -> None:
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A hash of the module's weights: keys exported graphs and fidelity verdicts on disk."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def build_runner(
    visual: torch.nn.Module,
    resolved: Resolved,
    spec: AccelSpec,
    device: torch.device,
    fingerprint: Callable[[], str],
) -> Runner:
    """The image-tower callable for this back-end and precision."""
    backend, precision = resolved.backend, resolved.precision
    if backend == "onnx":
        from pixseek.models.onnx_backend import onnx_runner

        return onnx_runner(visual, precision, device, spec, fingerprint)
    module = visual
    if precision == "int8":
        module = _quantize_dynamic(visual)
    memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
    if spec.channels_last:
        module = copy.deepcopy(module) if module is visual else module
        module = module.to(memory_format=torch.channels_last)
    dtype = model_dtype(resolved, device)
    if bf16_weights(resolved, device):
        module = copy.deepcopy(module) if module is visual else module
        module, dtype = module.to(torch.bfloat16), torch.bfloat16
    autocast = device.type == "cpu" and precision == "bf16" and dtype != torch.bfloat16

    def prepare(pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(device, dtype=dtype, non_blocking=True)
        return pixels.contiguous(memory_format=memory_format)

    if backend == "jit":
        module = _trace(module, prepare(_example(visual)))
    elif backend == "compile":
        module = _Padded(torch.compile(module, dynamic=False))

    def run(pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            return module(prepare(pixels)).float()

    return run


def _example(visual: torch.nn.Module) -> torch.Tensor:
    size = getattr(visual, "image_size", 224)
    size = size if isinstance(size, tuple | list) else (size, size)
    return torch.zeros(2, 3, int(size[0]), int(size[1]))


def _quantize_dynamic(visual: torch.nn.Module) -> torch.nn.Module:
    """int8 weights, activations quantised per batch: nn.Linear only (the MLPs, the head)."""
    import warnings

    engines = torch.backends.quantized.supported_engines
    if "fbgemm" in engines or "x86" in engines:
        torch.backends.quantized.engine = "x86" if "x86" in engines else "fbgemm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notice (points to torchao)
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(visual).float().cpu(), {torch.nn.Linear}, dtype=torch.qint8
        )


def _trace(module: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python values in the graph
        traced = torch.jit.trace(module, example, check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        try:
            return torch.jit.optimize_for_inference(frozen)
        except RuntimeError:  # quantized graphs: freezing alone is what applies
            return frozen


class _Padded:
    """Pads a short batch to the compiled size: one compiled graph for a whole ingest run."""

    def __init__(self, compiled: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.compiled = compiled
        self.size = 0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        n = pixels.shape[0]
        if not self.size or n > self.size:
            self.size = n
        if n == self.size:
            return self.compiled(pixels)
        pad = pixels.new_zeros((self.size - n, *pixels.shape[1:]))
        return self.compiled(torch.cat([pixels, pad]))[:n]


# -- fidelity ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fidelity:
    min_cosine: float
    mean_cosine: float
    topk_overlap: float  # mean share of the fp32 top-k neighbours the candidate also returns
    k: int

    def passes(self, threshold: float = FIDELITY_MIN_COSINE) -> bool:
        return self.min_cosine >= threshold


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_stats(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    cos = np.sum(_unit(reference) * _unit(candidate), axis=1)
    return float(cos.min()), float(cos.mean())


def topk_overlap(
    reference: np.ndarray, candidate: np.ndarray, queries: np.ndarray | None = None, k: int = 10
) -> float:
    """Retrieval agreement: the same queries against both embeddings of the same images.

    Without `queries`, every reference image queries the others (itself excluded).
    """
    ref, cand = _unit(reference), _unit(candidate)
    self_query = queries is None
    q_ref = ref if self_query else _unit(queries)
    q_cand = cand if self_query else q_ref
    k = min(k, len(ref) - (1 if self_query else 0))
    if k < 1:
        return 1.0
    s_ref, s_cand = q_ref @ ref.T, q_cand @ cand.T
    if self_query:
        np.fill_diagonal(s_ref, -np.inf)
        np.fill_diagonal(s_cand, -np.inf)
    top_ref = np.argsort(-s_ref, axis=1)[:, :k]
    top_cand = np.argsort(-s_cand, axis=1)[:, :k]
    shared = [len(set(a) & set(b)) / k for a, b in zip(top_ref, top_cand, strict=True)]
    return float(np.mean(shared))


def fidelity(
    reference: np.ndarray, candidate: np.ndarray, queries: np.ndarray | None = None, k: int = 10
) -> Fidelity:
    low, mean = cosine_stats(reference, candidate)
    return Fidelity(low, mean, topk_overlap(reference, candidate, queries, k), k)


class Guarded:
    """Trusts an automatically chosen lossy runner only after it matched fp32 on real images."""

    def __init__(self, fast: Runner, reference: Runner, verdict_path: Path | None) -> None:
        self.fast = fast
        self.reference = reference
        self.verdict_path = verdict_path
        self.checked = 0
        self.worst = 1.0
        self.trusted: bool | None = None
        self.lock = threading.Lock()
        if verdict_path is not None and verdict_path.is_file():
            try:
                self.trusted = bool(json.loads(verdict_path.read_text())["trusted"])
            except (OSError, ValueError, KeyError):
                self.trusted = None

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.trusted is True:
            return self.fast(pixels)
        if self.trusted is False:
            return self.reference(pixels)
        with self.lock:
            return self._check(pixels)

    def _check(self, pixels: torch.Tensor) -> torch.Tensor:
        n = min(len(pixels), GUARD_IMAGES - self.checked)
        fast = self.fast(pixels)
        if n <= 0:
            return fast
        reference = self.reference(pixels[:n])
        low, mean = cosine_stats(reference.numpy(), fast[:n].numpy())
        self.worst = min(self.worst, low)
        self.checked += n
        if low < FIDELITY_MIN_COSINE:
            log.warning(
                "automatic fast inference setting matched fp32 with cosine %.4f < %.2f on these "
                "weights; using fp32 (set PIXSEEK_PRECISION to choose explicitly)",
                low,
                FIDELITY_MIN_COSINE,
            )
            self._record(False, low, mean)
            return (
                torch.cat([reference, self.reference(pixels[n:])]) if len(pixels) > n else reference
            )
        if self.checked >= GUARD_IMAGES:
            self._record(True, self.worst, mean)
        return fast

    def _record(self, trusted: bool, low: float, mean: float) -> None:
        self.trusted = trusted
        if self.verdict_path is None:
            return
        verdict = {"trusted": trusted, "min_cosine": low, "last_mean_cosine": mean}
        verdict.update(images=self.checked, threshold=FIDELITY_MIN_COSINE)
        try:
            self.verdict_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.verdict_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(verdict) + "\n")
            os.replace(tmp, self.verdict_path)
        except OSError:  # a read-only cache only costs a re-check next time
            pass
