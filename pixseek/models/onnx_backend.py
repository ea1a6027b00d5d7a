"""ONNX Runtime back-end for the CLIP image tower: export once, cache on disk, run a session.

The graph is exported with torch's dynamo exporter (dynamic batch axis) and, for int8, quantised
with ONNX Runtime's dynamic quantisation (int8 per-channel weights for every MatMul, activations
quantised per batch; 7-bit weights on x86 CPUs without VNNI, as ONNX Runtime recommends to avoid
saturation). It is stored under `<cache_dir>/onnx/<weights hash>-<settings>/visual.onnx`, written
to a temporary directory first and renamed into place, so concurrent processes never read a
half-written graph. Export takes seconds (ViT-B-32: ~10 s + ~3 s quantisation) and happens once
per model, precision and library version.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pixseek.errors import UserError, first_line

if TYPE_CHECKING:
    from pixseek.models.accel import AccelSpec, Runner

GRAPH_FILE = "visual.onnx"


def cpu_has_vnni() -> bool:
    """x86 VNNI (int8 dot products): without it, int8 weights use 7 bits (ORT's advice)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return True  # not Linux x86: ARM and Apple use other kernels; full range is fine
    if "flags" not in flags:
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags


def graph_key(fingerprint: str, precision: str, device: torch.device) -> str:
    import onnxruntime

    reduce_range = precision == "int8" and not cpu_has_vnni()
    parts = [
        fingerprint,
        precision + ("-r7" if reduce_range else ""),
        device.type,
        f"torch{torch.__version__.split('+')[0]}",
        f"ort{onnxruntime.__version__}",
    ]
    return "-".join(parts)


def onnx_runner(
    visual: torch.nn.Module,
    precision: str,
    device: torch.device,
    spec: AccelSpec,
    fingerprint: Callable[[], str],
) -> Runner:
    import onnxruntime as ort

    path = cached_graph(visual, precision, device, spec.cache_dir, fingerprint)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = spec.threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no provider chatter on stderr
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        device_id = device.index or 0
        providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        reason = first_line(exc)
        raise UserError(
            f"ONNX Runtime cannot load {path}: {reason[:200]}; delete that directory to "
            "re-export, or set PIXSEEK_BACKEND=eager"
        ) from None
    input_name = session.get_inputs()[0].name
    dtype = np.float16 if precision == "fp16" else np.float32

    def run(pixels: torch.Tensor) -> torch.Tensor:
        array = pixels.detach().to("cpu").numpy().astype(dtype, copy=False)
        (features,) = session.run(None, {input_name: array})
        return torch.from_numpy(np.asarray(features, dtype=np.float32))

    return run


def cached_graph(
    visual: torch.nn.Module,
    precision: str,
    device: torch.device,
    cache_dir: Path | None,
    fingerprint: Callable[[], str],
    *,
    graph_file: str = GRAPH_FILE,
    export: Callable[[Path], None] | None = None,
) -> Path:
    """The exported (and, for int8, quantised) graph for these weights; built on first use.

    `export(path)` writes the fp32 graph of another module (the text tower, under its own
    `graph_file`); by default the image tower `visual` is exported.
    """
    root = (cache_dir or Path(tempfile.gettempdir()) / "pixseek-cache") / "onnx"
    final = root / graph_key(fingerprint(), precision, device)
    if (final / graph_file).is_file():
        return final / graph_file
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    except OSError as exc:
        raise UserError(f"cannot write the ONNX cache under {root}: {exc}") from None
    try:
        fp32 = root / graph_key(fingerprint(), "fp32", device) / graph_file
        if precision == "int8" and fp32.is_file():  # quantise the cached fp32 graph
            _quantize(fp32, work / graph_file)
        elif export is not None:
            target = work / (f"fp32-{graph_file}" if precision == "int8" else graph_file)
            export(target)
            if precision == "int8":
                _quantize(target, work / graph_file)
                target.unlink()
                external_data(target).unlink(missing_ok=True)
        else:
            _export(visual, precision, device, work)
        try:
            work.rename(final)
        except OSError:  # another process finished first: use theirs
            if not (final / graph_file).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final / graph_file


def _export(visual: torch.nn.Module, precision: str, device: torch.device, work: Path) -> None:
    fp32_path = work / ("visual-fp32.onnx" if precision == "int8" else GRAPH_FILE)
    module = visual
    if device.type == "cpu":
        dtype = next(visual.parameters()).dtype
        module = visual if dtype == torch.float32 else _float_copy(visual)
        example = torch.zeros(2, 3, *_size(visual))
    else:
        example = torch.zeros(2, 3, *_size(visual), device=device, dtype=_dtype(precision))
    batch = torch.export.Dim("batch", min=1, max=65536)
    export_graph(
        module, (example,), ({0: batch},), ["pixels"], ["features"], fp32_path, "image tower"
    )
    if precision == "int8":
        _quantize(fp32_path, work / GRAPH_FILE)
        fp32_path.unlink()


def export_graph(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    dynamic_shapes: tuple[dict[int, object], ...],
    input_names: list[str],
    output_names: list[str],
    path: Path,
    what: str,
    advice: str = "set PIXSEEK_BACKEND=eager",
) -> None:
    """Export `module` with torch's dynamo exporter to one self-contained .onnx file, quietly."""
    try:
        with warnings.catch_warnings(), quiet_streams(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module.eval(),
                args,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                input_names=input_names,
                output_names=output_names,
                external_data=False,
                verbose=False,
            )
            program.save(str(path))
    except Exception as exc:  # the exporter raises many types; keep its first line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"cannot export the CLIP {what} to ONNX: {reason[:200]}; {advice}"
        ) from None


def external_data(graph: Path) -> Path:
    """Where `externalize` puts a graph's weights."""
    return graph.with_name(graph.name + ".data")


def externalize(graph: Path) -> None:
    """Move the graph's weights out of the protobuf into `external_data(graph)` beside it.

    ONNX Runtime then maps the weights file instead of parsing it out of the model: opening
    ViT-B-32's text tower took 0.17 s instead of 0.44 s here, which a text search from the shell
    pays on every run. Only for a graph not yet visible to others (the export's work dir).
    """
    import onnx

    model = onnx.load(str(graph))
    onnx.save_model(
        model,
        str(graph),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=external_data(graph).name,
        size_threshold=1024,
    )


@contextlib.contextmanager
def quiet_streams() -> Iterator[None]:
    """Swallow the exporter's chatter on stdout/stderr. sys.stdout is one object for the whole
    process: redirected from a background thread (the API's text-tower export) it would swallow
    what the main thread prints, such as search results. So only the main thread redirects."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _quantize(source: Path, target: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # needs the `onnx` package besides onnxruntime
        raise UserError(
            f"int8 ONNX quantisation needs the onnx package ({exc}); pip install onnx, "
            "or set PIXSEEK_PRECISION=fp32"
        ) from None
    logging.disable(logging.WARNING)  # "consider pre-processing" advice on the root logger
    try:
        with warnings.catch_warnings(), quiet_streams():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                str(source),
                str(target),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=not cpu_has_vnni(),
            )
    finally:
        logging.disable(logging.NOTSET)


def _float_copy(visual: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(visual).float()


def _size(visual: torch.nn.Module) -> tuple[int, int]:
    size = getattr(visual, "image_size", 224)
    size = size if isinstance(size, tuple | list) else (size, size)
    return int(size[0]), int(size[1])


def _dtype(precision: str) -> torch.dtype:
    return torch.float16 if precision == "fp16" else torch.float32
