"""`auto` by measurement: the fastest inference setting that stays faithful to fp32 on this machine.

With PIXSEEK_BACKEND and PIXSEEK_PRECISION both `auto` on CPU, the CLIP embedder does not trust
an assumption (pixseek.models.accel.resolve) but measures, once per `MachineKey` (the weights'
fingerprint, the CPU model and the flags that matter for inference, cores, torch threads,
torch / onnxruntime versions, device): every candidate the CPU supports is built from the loaded
model, embeds the first real images (at least SELECT_MIN_IMAGES; mirrored copies pad the set to
SELECT_IMAGES), is compared with eager fp32 (min cosine >= SELECT_MIN_COSINE and top-10
neighbour overlap >= SELECT_MIN_OVERLAP) and timed in interleaved rounds. The fastest faithful
candidate wins; eager fp32, the reference, is the fallback. The `Decision`, with every
candidate's numbers and the reason each was rejected, is stored as JSON in
`cache_dir/accel/<key hash>.json` and reused while the key matches; new weights, another CPU,
other cores or library versions give another key and a new measurement. Delete the file (or the
folder) to measure again; set PIXSEEK_BACKEND / PIXSEEK_PRECISION to force a setting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pixseek.errors import first_line
from pixseek.models import accel, accel_check
from pixseek.models.accel_check import Setting

if TYPE_CHECKING:
    from pixseek.models.clip import ClipEmbedder

SELECT_MIN_COSINE = 0.999
SELECT_MIN_OVERLAP = 0.8  # the top-k retrieval agreement tests/test_accel.py asks of every setting
SELECT_MIN_IMAGES = 8  # smaller first batches run in fp32 and leave the measurement for later
SELECT_IMAGES = 24  # fidelity set: the first real images, padded with mirrored copies
TIMED_IMAGES = 16
TIMED_ROUNDS = 2
# /proc/cpuinfo flags that decide which kernels oneDNN / ONNX Runtime / fbgemm can use.
RELEVANT_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
REFERENCE = Setting("eager", "fp32")
log = logging.getLogger("pixseek.accel")


@dataclass(frozen=True)
class MachineKey:
    """Everything a measured decision depends on; another value means measuring again."""

    weights: str
    cpu_model: str
    cpu_flags: tuple[str, ...]
    cores: int
    threads: int
    torch: str
    onnxruntime: str
    device: str

    @property
    def digest(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class CandidateResult:
    setting: str
    backend: str
    precision: str
    channels_last: bool
    images_per_s: float | None
    min_cosine: float | None
    mean_cosine: float | None
    top10_overlap: float | None
    passed: bool
    rejected: str  # why it was not chosen; "" for the chosen one


@dataclass(frozen=True)
class Decision:
    key: MachineKey
    chosen: Setting
    candidates: tuple[CandidateResult, ...]
    measured_at: str  # ISO 8601, UTC
    images: int  # images in the fidelity set
    seconds: float  # how long the measurement took

    def to_json(self) -> dict[str, Any]:
        return {
            "key": dataclasses.asdict(self.key),
            "key_hash": self.key.digest,
            "chosen": dataclasses.asdict(self.chosen),
            "chosen_label": self.chosen.label,
            "candidates": [dataclasses.asdict(c) for c in self.candidates],
            "measured_at": self.measured_at,
            "images": self.images,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        key = dict(data["key"])
        key["cpu_flags"] = tuple(key["cpu_flags"])
        return cls(
            key=MachineKey(**key),
            chosen=Setting(**data["chosen"]),
            candidates=tuple(CandidateResult(**c) for c in data["candidates"]),
            measured_at=str(data["measured_at"]),
            images=int(data["images"]),
            seconds=float(data["seconds"]),
        )

    def summary(self) -> str:
        """One line: what was measured and what won."""
        parts = []
        for c in self.candidates:
            speed = "-" if c.images_per_s is None else f"{c.images_per_s:.1f}/s"
            cos = "-" if c.min_cosine is None else f"cos {c.min_cosine:.5f}"
            verdict = "chosen" if c.setting == self.chosen.label else c.rejected
            parts.append(f"{c.setting} {speed} {cos} ({verdict})")
        return f"chose {self.chosen.label} on {self.images} images in {self.seconds:.1f}s: " + (
            "; ".join(parts)
        )


# -- the machine -----------------------------------------------------------------------------


def cpu_info(path: Path = Path("/proc/cpuinfo")) -> tuple[str, tuple[str, ...]]:
    """The CPU model name and the inference-relevant flags it reports (sorted)."""
    model, flags = "", set()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "model name" and not model:
            model = value.strip()
        elif name in ("flags", "features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), tuple(
        sorted(flag for flag in RELEVANT_FLAGS if flag in flags)
    )


def _onnxruntime_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return ""
    return str(onnxruntime.__version__)


def machine_key(weights: str, device: torch.device, cpuinfo: Path | None = None) -> MachineKey:
    model, flags = cpu_info(cpuinfo) if cpuinfo else cpu_info()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return MachineKey(
        weights=weights,
        cpu_model=model,
        cpu_flags=flags,
        cores=int(cores or 1),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        onnxruntime=_onnxruntime_version(),
        device=str(device),
    )


def candidates(flags: Iterable[str], onnx: bool | None = None) -> list[Setting]:
    """The settings worth timing on a CPU with these flags; the reference (eager fp32) first."""
    onnx = accel.onnxruntime_available() if onnx is None else onnx
    found = [REFERENCE]
    if BF16_FLAGS & set(flags):  # bf16 weights via oneDNN; emulated (8x slower) without
        found.append(Setting("eager", "bf16"))
    if onnx:  # fp32 first: int8 then quantises its cached graph instead of exporting again
        found += [Setting("onnx", "fp32"), Setting("onnx", "int8")]
    found += [Setting("eager", "int8"), Setting("eager", "fp32", channels_last=True)]
    return found


# -- the choice ------------------------------------------------------------------------------


def select(
    settings: Sequence[Setting],
    measure: Callable[[Setting], float],
    check: Callable[[Setting], accel.Fidelity],
    min_cosine: float = SELECT_MIN_COSINE,
    min_overlap: float = SELECT_MIN_OVERLAP,
) -> tuple[Setting, tuple[CandidateResult, ...]]:
    """The fastest setting whose fidelity passes; the reference (eager fp32) when none does.

    `check` gives a setting's fidelity to fp32, `measure` its images/s; either may raise (a
    setting that cannot run here), which rejects that setting.
    """
    rows: list[dict[str, Any]] = []
    for setting in settings:
        row: dict[str, Any] = {
            "setting": setting.label,
            "backend": setting.backend,
            "precision": setting.precision,
            "channels_last": setting.channels_last,
            "images_per_s": None,
            "min_cosine": None,
            "mean_cosine": None,
            "top10_overlap": None,
            "passed": False,
            "rejected": "",
        }
        rows.append(row)
        try:
            fid = check(setting)
            row.update(min_cosine=round(fid.min_cosine, 6), mean_cosine=round(fid.mean_cosine, 6))
            row["top10_overlap"] = round(fid.topk_overlap, 4)
            row["images_per_s"] = round(float(measure(setting)), 2)
        except Exception as exc:  # one setting that cannot run must not stop the choice
            row["rejected"] = f"unavailable: {first_line(exc)[:160]}"
            continue
        if fid.min_cosine < min_cosine:
            row["rejected"] = f"min cosine {fid.min_cosine:.5f} < {min_cosine}"
        elif fid.topk_overlap < min_overlap:
            row["rejected"] = f"top-{fid.k} overlap {fid.topk_overlap:.3f} < {min_overlap}"
        else:
            row["passed"] = True
    passing = [(row, s) for row, s in zip(rows, settings, strict=True) if row["passed"]]
    if passing:
        best_row, chosen = max(passing, key=lambda pair: pair[0]["images_per_s"])
    else:
        chosen = REFERENCE
        best_row = next((row for row in rows if row["setting"] == REFERENCE.label), {})
    for row in rows:
        if row["passed"] and row is not best_row:
            row["rejected"] = f"slower than {chosen.label}"
    return chosen, tuple(CandidateResult(**row) for row in rows)


def decision_path(cache_dir: Path, key: MachineKey) -> Path:
    return cache_dir / "accel" / f"{key.digest}.json"


def load_decision(cache_dir: Path | None, key: MachineKey) -> Decision | None:
    if cache_dir is None:
        return None
    try:
        decision = Decision.from_json(json.loads(decision_path(cache_dir, key).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return decision if decision.key == key else None


def save_decision(cache_dir: Path | None, decision: Decision) -> None:
    if cache_dir is None:
        return
    path = decision_path(cache_dir, decision.key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(decision.to_json(), indent=2) + "\n")
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs a measurement next time
        pass


def cached_decisions(cache_dir: Path) -> list[Decision]:
    """Every decision stored under this cache directory, newest first."""
    found = []
    for path in sorted((cache_dir / "accel").glob("*.json")):
        try:
            found.append(Decision.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda d: d.measured_at, reverse=True)


def decide(
    key: MachineKey,
    cache_dir: Path | None,
    settings: Sequence[Setting],
    measure: Callable[[Setting], float],
    check: Callable[[Setting], accel.Fidelity],
    images: int = 0,
) -> tuple[Decision, bool]:
    """The cached decision for this key, else a new one (measured, then saved); and whether
    it was measured now."""
    cached = load_decision(cache_dir, key)
    if cached is not None:
        return cached, False
    started = time.perf_counter()
    chosen, rows = select(settings, measure, check)
    decision = Decision(
        key=key,
        chosen=chosen,
        candidates=rows,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        images=images,
        seconds=round(time.perf_counter() - started, 2),
    )
    save_decision(cache_dir, decision)
    return decision, True


# -- measuring on the embedder's own weights and images -----------------------------------------


def wanted(spec: accel.AccelSpec, device: torch.device) -> bool:
    """Only `auto` x `auto` on CPU is chosen by measurement; any explicit setting is obeyed."""
    auto = spec.backend.strip().lower() == "auto" and spec.precision.strip().lower() == "auto"
    return auto and device.type == "cpu"


def fidelity_set(pixels: torch.Tensor, size: int = SELECT_IMAGES) -> torch.Tensor:
    """The first real images, padded with mirrored (then upside-down) copies up to `size`."""
    pixels = pixels[:size]
    variants = [pixels, torch.flip(pixels, dims=[3]), torch.flip(pixels, dims=[2])]
    return torch.cat(variants)[:size]


class Sweep:
    """Builds every candidate once, embeds the fidelity set with each, times them interleaved.

    Runs on the first `measure` / `check` call, so a cached decision never builds anything.
    """

    def __init__(self, clip: ClipEmbedder, pixels: torch.Tensor, settings: Sequence[Setting]):
        self.clip, self.pixels, self.settings = clip, pixels, list(settings)
        self.rates: dict[Setting, float] = {}
        self.fidelities: dict[Setting, accel.Fidelity] = {}
        self.errors: dict[Setting, Exception] = {}
        self.done = False

    def measure(self, setting: Setting) -> float:
        self._run()
        if setting in self.errors:
            raise self.errors[setting]
        return self.rates[setting]

    def check(self, setting: Setting) -> accel.Fidelity:
        self._run()
        if setting in self.errors:
            raise self.errors[setting]
        return self.fidelities[setting]

    def _run(self) -> None:
        if self.done:
            return
        self.done = True
        batch = len(self.pixels)
        runners: dict[Setting, accel.Runner] = {}
        reference = None
        for setting in self.settings:
            try:
                run, _ = accel_check.build(self.clip, setting)
                vectors = accel_check.embed(run, self.pixels, batch)  # also the warm-up
            except Exception as exc:
                self.errors[setting] = exc
                continue
            reference = vectors if reference is None else reference
            self.fidelities[setting] = accel.fidelity(reference, vectors, k=10)
            runners[setting] = run
        timed = self.pixels[:TIMED_IMAGES]
        order = list(runners)
        for r in range(TIMED_ROUNDS):
            shift = r % max(len(order), 1)
            for setting in order[shift:] + order[:shift]:
                started = time.perf_counter()
                runners[setting](timed)
                rate = len(timed) / max(time.perf_counter() - started, 1e-9)
                self.rates[setting] = max(self.rates.get(setting, 0.0), rate)  # best round


def choose(clip: ClipEmbedder, pixels: torch.Tensor) -> Decision:
    """The cached or freshly measured decision for this embedder on this machine."""
    key = machine_key(clip.fingerprint(), clip.device)
    sample = fidelity_set(pixels)
    settings = candidates(key.cpu_flags)
    sweep = Sweep(clip, sample, settings)
    decision, fresh = decide(
        key, clip.spec.cache_dir, settings, sweep.measure, sweep.check, images=len(sample)
    )
    if fresh:
        log.info("inference setting measured (%s): %s", key.cpu_model, decision.summary())
    else:
        log.info(
            "inference setting %s (decision measured %s, cached)",
            decision.chosen.label,
            decision.measured_at,
        )
    return decision
