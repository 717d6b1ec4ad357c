"""How long one update of a trial's model takes on its device: a few updates timed on the first
images of its dataset (the dry run's estimate of a study's time, ``platform.budget``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch

from .config import TrialConfig
from .objective import build_for, resolve_device, resolve_precision
from .threads import torch_threads
from .train import adam, train_step


def time_updates(config: Mapping[str, Any], ds: Any, threads: int = 1, budget_s: float = 1.0,
                 most: int = 5) -> tuple[float, int, int, str]:
    """(median seconds per update, updates timed, labeled batch, device) of ``config``'s model with
    ``threads`` torch threads, timed on the first images of ``ds`` after one warm-up update on a
    small batch (at most ``most`` updates or ``budget_s`` seconds; an update over 0.3 s is timed
    once, so the estimate costs about one update). The caller's RNG state is untouched."""
    cfg = TrialConfig.from_mapping(config)
    device = resolve_device(cfg.task.device)
    cfg = resolve_precision(cfg, device)  # task.precision auto: what this device runs
    dtype = getattr(torch, cfg.task.dtype)
    n = len(ds.x_train)
    full_l, full_u = min(cfg.task.batch.labeled, n), min(cfg.task.batch.unlabeled, n)
    semi = cfg.task.mode == "semi_supervised"
    with torch_threads(max(int(threads), 1)), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
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
    return times[len(times) // 2], len(times), full_l, str(device)
