"""``run_trial(config, report) -> metrics``: the one seam between the platform and the science.

Call it from a notebook exactly as the platform does::

    from vat_study import run_trial
    metrics = run_trial({"dataset": "digits", "method": "vat", "eps": 1.0, "steps": 300},
                        report=lambda step, m: print(step, m))

The config keys, defaults and allowed values are ``vat_study.config.TrialConfig``; an unknown
or invalid key raises ``ConfigError`` naming it before anything is loaded or trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ConfigError, TrialConfig
from .data import ZCA, DataError, Dataset, Splits, load_dataset, make_splits
from .batched import SeedBatch
from .models import build_model
from .probes import RVADV_TRAIN, grad_sd_norm_name
from .train import error_rates, train_seeds

Report = Callable[[int, Mapping[str, float]], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError([f"device: {name!r} asked for, but no CUDA device is available here (use 'cpu' or 'auto')"])
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise ConfigError([f"device: {name!r} does not exist ({torch.cuda.device_count()} CUDA devices)"])
    return torch.device(name)


def run_trial(config: Mapping[str, Any] | None = None, report: Report | None = None) -> dict[str, Any]:
    """Train one model as ``config`` says and return its final metrics.

    ``report(step, metrics)`` (optional) is called at every evaluation step with the running
    loss terms, the validation error and the probes due at that step. An exception it raises
    stops the trial and propagates (that is how a caller prunes or times out a trial).

    Returns: val_error, test_error, rvadv (at the probe's fixed eps) and rvadv_train, train_seconds
    (updates only), wall_seconds, steps, n_labeled, n_validation, device, and the last
    evaluation's other metrics. Training is deterministic for a given seed on the CPU; the
    caller's RNG state is untouched. A loss that turns NaN/inf raises FloatingPointError.
    Several seeds trained together: ``run_seeds``.
    """
    cfg = TrialConfig.from_mapping(config)
    if cfg.seeds is not None:
        raise ConfigError(["seeds: run_trial trains one seed (the config's seed); train several together with "
                           "run_seeds(config, seeds)"])
    result = _train(cfg, report)
    return result.metrics[cfg.seed]


@dataclass
class SeedsResult:
    """What ``run_seeds`` returns: each seed's final metrics (as ``run_trial`` gives them, plus
    ``batch_seeds``), and the seeds whose loss turned NaN/inf with the message."""

    metrics: dict[int, dict[str, Any]]
    failed: dict[int, str]


def run_seeds(config: Mapping[str, Any] | None, seeds: list[int], report: Report | None = None) -> SeedsResult:
    """Seeded repeats in one go: the seeds train together as one batched model
    (``vat_study.batched``), each with its own initialization, splits, batches and random starts,
    exactly as its own ``run_trial`` would (dropout and noise draws aside). ``report`` gets each
    seed's metrics with a ``seed`` entry. A seed whose loss turns NaN/inf is in ``failed`` while
    the others train on. ``model_path`` must hold ``{seed}`` (one file per seed)."""
    cfg = TrialConfig.from_mapping({**dict(config or {}), "seeds": list(seeds)})
    return _train(cfg, report)


def _train(cfg: TrialConfig, report: Report | None) -> SeedsResult:
    device = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    t_start = time.perf_counter()
    seeds = cfg.seeds if cfg.seeds is not None else [cfg.seed]
    batched = cfg.seeds is not None

    prepared = prepare_data(cfg.model_copy(update={"seed": seeds[0]}), device)
    ds, x_train, y_train = prepared.dataset, prepared.x_train, prepared.y_train
    x_test, y_test = prepared.x_test, prepared.y_test
    splits = [prepared.splits] + [seed_splits(cfg, ds, s) for s in seeds[1:]]
    if cfg.zca and len(seeds) > 1 and any(not torch.equal(sp.unlabeled, splits[0].unlabeled) for sp in splits):
        raise ConfigError(["seeds: zca is fitted on each seed's own unlabeled pool; train these seeds separately"])

    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        models = []
        for s in seeds:  # each seed's initialization exactly as its own run draws it
            torch.manual_seed(s)
            np.random.seed(s % 2**32)
            models.append(_build(cfg, ds).to(device, dtype))
        model = SeedBatch(models) if batched else models[0]
        del models
        reports = None if report is None else [
            (lambda step, m, s=s: report(step, {**m, "seed": s})) if batched else report for s in seeds]
        results = train_seeds(cfg, seeds, x_train, y_train, splits, model, reports)

    test_errors = error_rates(model, [x_test] * len(seeds), [y_test] * len(seeds))  # the only use of the test set
    wall = time.perf_counter() - t_start
    out, failed = {}, {}
    for i, (s, metrics) in enumerate(zip(seeds, results)):
        if "diverged" in metrics:
            failed[s] = str(metrics["diverged"])
            continue
        metrics["test_error"] = test_errors[i]
        if cfg.model_path:  # weights only (a state_dict): load with torch.load(..., weights_only=True)
            path = Path(cfg.model_path.replace("{seed}", str(s)))
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.seed_state_dict(i) if batched else model.state_dict(), path)
        metrics.update(
            steps=cfg.steps,
            wall_seconds=wall / len(seeds),
            n_labeled=len(splits[i].labeled),
            n_validation=len(splits[i].validation),
            device=str(device),
        )
        if batched:
            metrics["batch_seeds"] = len(seeds)
        out[s] = metrics
    return SeedsResult(out, failed)


def seed_splits(cfg: TrialConfig, ds: Dataset, seed: int) -> Splits:
    n_validation = cfg.validation if cfg.validation is not None else min(1000, len(ds.y_train) // 5)
    try:
        return make_splits(ds.y_train, cfg.n_labeled, n_validation, seed, ds.n_classes)
    except DataError as e:
        raise ConfigError([str(e)]) from None


@dataclass
class PreparedData:
    dataset: Dataset
    splits: Splits
    x_train: torch.Tensor  # preprocessed (ZCA if configured), on the device
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def prepare_data(cfg: TrialConfig, device: torch.device | str = "cpu") -> PreparedData:
    """The trial's data exactly as training sees it: loaded, split by seed, preprocessed."""
    dtype = getattr(torch, cfg.dtype)
    try:
        ds = load_dataset(cfg.dataset, root=cfg.data_root, download=cfg.download, idx_paths=cfg.idx_paths)
    except DataError as e:
        raise ConfigError([str(e)]) from None
    splits = seed_splits(cfg, ds, cfg.seed)
    x_train, x_test = ds.x_train, ds.x_test
    if cfg.zca:
        if not ds.is_image:
            raise ConfigError([f"zca: needs image data; dataset {cfg.dataset!r} is not"])
        zca = ZCA(x_train[splits.unlabeled])  # fitted on training images only, never validation or test
        x_train, x_test = zca(x_train), zca(x_test)
    return PreparedData(ds, splits, x_train.to(device, dtype), ds.y_train.to(device),
                        x_test.to(device, dtype), ds.y_test.to(device))


def _build(cfg: TrialConfig, ds: Dataset) -> torch.nn.Module:
    try:
        return build_model(cfg.model, ds.input_shape, ds.n_classes, hidden=cfg.hidden,
                           top_bn=bool(cfg.top_bn), noise_sigma=cfg.noise_sigma, dropout=cfg.dropout)
    except ValueError as e:
        raise ConfigError([f"model: {e}"]) from None


def load_trained(config: Mapping[str, Any], model_path: str | None = None) -> tuple[torch.nn.Module, PreparedData]:
    """A trained model (eval mode, CPU) and its data, from a trial's config and saved weights
    (``model_path`` or the config's own); for analyses that need the model itself (Fig. 1, 5, 6)."""
    cfg = TrialConfig.from_mapping({**dict(config), "device": "cpu"})
    path = model_path or cfg.model_path
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"no saved weights at {path!r} (run the study with save_models: true)")
    data = prepare_data(cfg)
    model = _build(cfg, data.dataset).to(dtype=getattr(torch, cfg.dtype))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), data


def resolve_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fully resolved trial config (every key, defaults filled in) as a plain dict, exactly as
    run_trial would use it; raises ConfigError naming each bad field. The platform validates
    study files and records trials with this, so it needs nothing else from the science side."""
    return TrialConfig.from_mapping(config).model_dump(mode="json")


def reported_metrics(config: Mapping[str, Any] | None) -> frozenset[str]:
    """The numeric final metrics ``run_trial`` returns for this config (what a study may select
    or optimize by): the loss terms, errors and R_vadv of the last evaluation, the probes the
    config turns on, and the run's bookkeeping numbers. Raises ConfigError for a bad config."""
    cfg = TrialConfig.from_mapping(config)
    names = {"loss", "nll", "reg", "lr", "val_error", "test_error", "rvadv", RVADV_TRAIN,
             "train_seconds", "wall_seconds", "steps", "n_labeled", "n_validation"}
    if cfg.probes.fidelity is not None:
        names.add("fidelity")
    if cfg.probes.grad_variance is not None:
        names |= {grad_sd_norm_name(k) for k in cfg.probes.grad_variance.power_iterations}
    return frozenset(names)


CONFIG_KEYS: frozenset[str] = frozenset(TrialConfig.model_fields)
"""The top-level keys a trial config may have."""


def default_config() -> dict[str, Any]:
    """The fully resolved default config (the offline default trial) as a plain dict."""
    return TrialConfig().model_dump()
