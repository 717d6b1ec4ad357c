"""Performance measurements (docs/performance.md): ratios against a reference timed in the same run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(variants: dict[str, Callable[[], object]], rounds: int, steps: int,
                        warmup: int = 3) -> dict[str, float]:
    """Median ms per call of each variant: ``warmup`` calls each, then ``rounds`` rounds that time
    ``steps`` calls of every variant in turn, so that drift of the machine hits all alike."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    per_round: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            per_round[name].append((time.perf_counter() - t) / steps * 1000)
    return {k: statistics.median(v) for k, v in per_round.items()}
