"""A study's budget, for the dry run: how many updates its trials make, and about how long they
take on this device, from a few timed updates of the study's own model on its own data (a second
or two at most: an update slower than 0.3 s is timed once)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .objective import resolve_config
from .spec import StudySpec


@dataclass
class Timing:
    seconds_per_update: float
    updates_timed: int
    batch: int  # the labeled batch (the study's)
    device: str
    threads: int

    def describe(self) -> str:
        return (f"{_duration(self.seconds_per_update)} per update on {self.device} ({self.updates_timed} update(s) "
                f"of batch {self.batch} timed, {self.threads} thread(s))")


def _duration(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    if s < 2 * 86400:
        return f"{s / 3600:.3g} h"
    if s < 365 * 86400:
        return f"{s / 86400:.3g} days"
    return f"{s / (365 * 86400):,.3g} years"


def trial_updates(spec: StudySpec) -> tuple[int, int]:
    """(trials, updates) the study asks for: every grid trial's task.steps summed; for Optuna
    n_trials x seeds trials at the most steps any point of the space gives."""
    def steps(params: Mapping[str, Any]) -> int:
        return int(resolve_config(spec.trial_config(params, spec.seeds[0]))["task"]["steps"])

    if spec.is_optuna:
        o = spec.search.optuna  # type: ignore[union-attr]
        most = max([steps({})] + [steps({k: v}) for k, d in o.space.items() for v in d.endpoints()])
        n = o.n_trials * len(spec.seeds)
        return n, n * most
    per = [steps(p) for p in spec.configurations()]
    return len(per) * len(spec.seeds), sum(per) * len(spec.seeds)


def time_updates(config: Mapping[str, Any], ds: Any, threads: int = 1, budget_s: float = 1.0,
                 most: int = 5) -> Timing:
    """Seconds per update of ``config``'s model on its device with ``threads`` torch threads,
    timed on the first images of ``ds`` after one warm-up update (at most ``most`` updates or
    ``budget_s`` seconds); an update over 0.3 s is timed once (the estimate costs about one update)."""
    import torch

    from .config import TrialConfig
    from .objective import build_for, resolve_device, resolve_precision
    from .train import adam, train_step

    cfg = TrialConfig.from_mapping(config)
    device = resolve_device(cfg.task.device)
    cfg = resolve_precision(cfg, device)
    dtype = getattr(torch, cfg.task.dtype)
    n = len(ds.x_train)
    full_l, full_u = min(cfg.task.batch.labeled, n), min(cfg.task.batch.unlabeled, n)
    semi = cfg.task.mode == "semi_supervised"
    previous = torch.get_num_threads()
    torch.set_num_threads(max(int(threads), 1))
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            model = build_for(config, ds).to(device, dtype)
            opt = adam(cfg, model)
            x, y = ds.x_train.to(device, dtype), ds.y_train.to(device)

            def update(b_l: int, b_u: int) -> float:
                t0 = time.perf_counter()
                train_step(cfg, model, opt, x[:b_l], y[:b_l], x[:b_u] if semi else None)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                return time.perf_counter() - t0

            update(min(4, full_l), min(4, full_u))  # warm-up on a small batch: allocations, kernels, lazy imports
            times = [update(full_l, full_u)]
            deadline = time.perf_counter() + budget_s
            while times[0] < 0.3 and len(times) < most and time.perf_counter() < deadline:
                times.append(update(full_l, full_u))  # a slow update is timed once: the estimate stays cheap
            times.sort()
            return Timing(times[len(times) // 2], len(times), full_l, str(device), threads)
    finally:
        torch.set_num_threads(previous)


def budget_lines(spec: StudySpec, ds: Any | None, threads: int) -> list[str]:
    """What the dry run prints about the study's size and time."""
    trials, updates = trial_updates(spec)
    head = "at most " if spec.is_optuna else ""
    lines = [f"budget: {head}{trials:,} trials, {head}{updates:,} updates in all"
             + (f" ({updates // max(trials, 1):,} per trial)" if trials else "")]
    if ds is None:
        lines.append("time: not estimated (the data is not here yet)")
        return lines
    t = time_updates(spec.trial_config(spec.configurations()[0] if not spec.is_optuna else {}, spec.seeds[0]),
                     ds, threads)
    total = t.seconds_per_update * updates
    lines.append(f"time: about {t.describe()} -> about {_duration(total)} of training one trial at a time "
                 f"(evaluations and probes extra" + (", Ray runs several at once where it has the CPUs / GPUs"
                                                      if spec.executor.kind == "ray" else "") + ")")
    return lines
