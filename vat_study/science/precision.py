"""``task.precision: auto``: the fastest faithful arithmetic where the study of its test error
covers the trial and the hardware has it, resolved when a trial starts (``objective``) and recorded with the trial (its metrics'
``precision``; the store: the trial's ``versions``).

auto is ``mixed_delta`` (the power iteration's products in bfloat16 on the difference from a
float32 clean pass, ``difference``) where

* the hardware computes bfloat16 natively: a CPU whose flags list ``avx512_bf16`` or ``amx_bf16``
  (AVX-512 BF16, AMX; a GPU's step time in mixed_delta is not measured yet, so a GPU runs float32);
  and
* ``MEASURED`` holds the dataset, the network and the method: where ``studies/precision_mnist.yaml``
  showed mixed_delta's test error within a point of float32's, paired by seed (docs/performance.md);

and ``float32`` everywhere else. Nothing here imports torch.

What backs auto: mixed_delta's power iteration keeps the cosine to the exact H d that float32
gives (``benchmarks.step_time --cosines-only``), and ``results/precision_mnist/`` pairs its test
error with float32's by seed (``MEASURED``: RPT within a point; VAT not yet shown to be).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FAST = "mixed_delta"
MEASURED: dict[str, tuple[str, ...]] = {"dataset": ("mnist",), "model": ("mlp",), "method": ("rpt",)}
"""Where mixed_delta's test error is shown within +-1 point of float32's: the 95 % CI of the
paired difference in ``results/precision_mnist/`` (MNIST-100, the paper's MLP, 1,500 updates,
3 paired seeds) lies inside [-1, +1]. RPT: +0.16 [-0.31, +0.63] points. VAT: +0.63 [-0.91,
+2.17], not within a point at n = 3, so auto runs VAT in float32."""
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux: /proc/cpuinfo; elsewhere none known)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_bfloat16(device: str) -> bool:
    """Whether ``device`` (a resolved torch device name: cpu, cuda, cuda:N) computes bfloat16
    natively, where mixed_delta's bfloat16 products can make its step faster than float32's: a CPU
    with ``BF16_CPU_FLAGS`` (``benchmarks.step_time`` prints the flags beside its step times). A
    GPU: mixed_delta's step time not yet measured there, so no."""
    if device.startswith("cuda"):
        return False
    return any(f in cpu_flags() for f in BF16_CPU_FLAGS)


def resolve(precision: str, *, dataset: str, model: str, method: str, device: str, dtype: str = "float32") -> str:
    """The arithmetic a trial runs: ``precision`` itself, or for auto ``FAST`` where ``MEASURED``
    holds the trial, its weights are float32 and ``device`` computes bfloat16 natively, else float32
    (no autocast: every pass in ``dtype``)."""
    if precision != "auto":
        return precision
    measured = (dtype == "float32" and dataset in MEASURED["dataset"] and model in MEASURED["model"]
                and method in MEASURED["method"])
    return FAST if measured and native_bfloat16(device) else "float32"


def of_config(resolved: Mapping[str, Any]) -> str:
    """The arithmetic a trial of this resolved config (``config.resolve_config``) runs on this
    machine (``task.device`` auto: a GPU if the torch already imported sees one)."""
    task, method = resolved.get("task") or {}, resolved.get("method") or {}
    device = str(task.get("device", "cpu"))
    if device == "auto":
        torch = sys.modules.get("torch")
        device = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    return resolve(str(task.get("precision", "float32")), dataset=str(task.get("dataset")), model=str(task.get("model")),
                   method=str(method.get("name")), device=device, dtype=str(task.get("dtype", "float32")))
