"""What every benchmark shares: where results go, the machine's description, timing helpers."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DATASETS = REPO.parent / "shared" / "datasets"
CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")


def load() -> list[float]:
    """The 1/5/15-minute load averages: timings on a shared machine are read against them."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu() -> dict[str, Any]:
    """CPU model, core count and the instruction-set flags that decide inference speed."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), ""
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "cpu_flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
    }


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean in milliseconds of samples given in seconds."""
    import numpy as np

    ms = np.asarray(samples_s) * 1000.0
    return {
        "n": len(samples_s),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Wall seconds of `repeat` calls of fn."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def write_results(
    name: str, report: dict[str, Any] | list[Any], markdown: str, out: Path = RESULTS
) -> None:
    """bench/results/NAME.json (the numbers) and NAME.md (the table people read)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)
