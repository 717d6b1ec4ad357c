"""Performance measurements (docs/performance.md): ratios against a reference timed in the same run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""wall: elapsed time; cpu: the CPU time of this process (all its threads), which a shared machine's
other work does not inflate by preempting it (with one torch thread: the step's own work)."""


def interleaved_rounds(variants: dict[str, Callable[[], object]], rounds: int, steps: int,
                       warmup: int = 3, clock: str = "wall") -> dict[str, list[float]]:
    """ms per call of each variant in each round: ``warmup`` calls each, then ``rounds`` rounds that
    time ``steps`` calls of every variant in turn, so that drift of the machine hits all alike;
    ``clock``: one of ``CLOCKS``."""
    now = CLOCKS[clock]
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    per_round: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t = now()
            for _ in range(steps):
                fn()
            per_round[name].append((now() - t) / steps * 1000)
    return per_round


def interleaved_medians(variants: dict[str, Callable[[], object]], rounds: int, steps: int,
                        warmup: int = 3, clock: str = "wall") -> dict[str, float]:
    """Median ms per call of each variant over ``interleaved_rounds``."""
    return {k: statistics.median(v) for k, v in interleaved_rounds(variants, rounds, steps, warmup, clock).items()}


def median_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of a / b, each round's a against the same round's b: robust to a
    machine whose load changes between rounds."""
    return statistics.median(x / y for x, y in zip(a, b))
