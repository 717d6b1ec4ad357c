"""``run_trial(config, report) -> metrics``: the one seam between the platform and the science.

Call it from a notebook exactly as the platform does::

    from vat_study import run_trial
    metrics = run_trial({"task": {"dataset": "digits", "steps": 300},
                         "method": {"name": "vat", "eps": 1.0}},
                        report=lambda step, m: print(step, m))

The config is nested as a study file is written (task / method / probes / seed); its keys,
defaults and allowed values are ``vat_study.science.config.TrialConfig`` (the method's settings:
``vat_study.science.methods``). The flat shorthand of vat-study 0.1 (``{"method": "vat", "eps": 1.0,
"steps": 300}``) reads the same. An unknown or invalid key raises ``ConfigError`` naming it
before anything is loaded or trained.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import precision, subnormals
from .config import LANE_SETTINGS, ConfigError, TrialConfig, lane_structure, upgrade_stored_config
from .config import reported_metrics, resolve_config  # noqa: F401  (re-exported: torch-free, defined with the config)
from .data import ZCA, DataError, Dataset, Splits, load_dataset, make_splits
from .batched import LaneBatch
from .models import build_model
from .threads import torch_threads, trial_threads
from .train import train_lanes

Report = Callable[[int, Mapping[str, float]], None]
"""``report(step, metrics)``: what ``run_trial`` calls at every evaluation."""

LaneReport = Callable[[int, int, Mapping[str, float]], None]
"""``report(lane, step, metrics)``: what ``run_lanes`` calls at every evaluation of each lane
(``lane``: the config's index), and ``run_seeds`` for each seed (``lane``: the seed)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError([f"task.device: {name!r} asked for, but no CUDA device is available here (use 'cpu' or 'auto')"])
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise ConfigError([f"task.device: {name!r} does not exist ({torch.cuda.device_count()} CUDA devices)"])
    return torch.device(name)


def resolve_precision(cfg: TrialConfig, device: torch.device) -> TrialConfig:
    """``cfg`` with ``task.precision: auto`` replaced by the arithmetic it runs on ``device``
    (``precision.resolve``); any other precision as it is."""
    if cfg.task.precision != "auto":
        return cfg
    resolved = precision.resolve("auto", dataset=cfg.task.dataset, model=str(cfg.task.model), method=cfg.method.name,
                                 device=str(device), dtype=cfg.task.dtype)
    return cfg.model_copy(update={"task": cfg.task.model_copy(update={"precision": resolved})})


def run_trial(config: Mapping[str, Any] | None = None, report: Report | None = None, *,
              threads: int | None = None) -> dict[str, Any]:
    """Train one model as ``config`` says and return its final metrics.

    ``report(step, metrics)`` (optional) is called at every evaluation step with the running
    loss terms, the validation error and the probes due at that step. An exception it raises
    stops the trial and propagates (that is how a caller prunes or times out a trial).

    Returns: val_error, test_error, rvadv (at the probe's fixed eps) and rvadv_train, train_seconds
    (updates only), wall_seconds, steps, n_labeled, n_validation, device, and the last
    evaluation's other metrics. Training is deterministic for a given seed on the CPU; the
    caller's RNG state is untouched. A loss that turns NaN/inf raises FloatingPointError.
    Several seeds trained together: ``run_seeds``; several trials (lanes): ``run_lanes``.

    ``threads``: torch threads for this trial (``vat_study.science.threads``: default ``VAT_STUDY_THREADS``,
    else 1); the caller's thread count is restored when it returns.
    """
    cfg = TrialConfig.from_mapping(config)
    if cfg.seeds is not None:
        raise ConfigError(["seeds: run_trial trains one seed (the config's seed); train several together with "
                           "run_seeds(config, seeds)"])
    result = _train([cfg], None if report is None else (lambda _lane, step, m: report(step, m)), batched=False,
                    threads=threads)
    return result.metrics[0]  # type: ignore[return-value]  (one lane raises when it diverges)


@dataclass
class SeedsResult:
    """What ``run_seeds`` returns: each seed's final metrics (as ``run_trial`` gives them, plus
    ``lanes``), and the seeds whose loss turned NaN/inf with the message."""

    metrics: dict[int, dict[str, Any]]
    failed: dict[int, str]


@dataclass
class LanesResult:
    """What ``run_lanes`` returns: lane i's final metrics at ``metrics[i]`` (as ``run_trial`` gives
    them, plus ``lanes``; None for a lane that diverged), and the diverged lanes' messages."""

    metrics: list[dict[str, Any] | None]
    failed: dict[int, str]


def run_seeds(config: Mapping[str, Any] | None, seeds: list[int], report: LaneReport | None = None, *,
              threads: int | None = None) -> SeedsResult:
    """Seeded repeats in one go: the seeds train together as one batched model
    (``vat_study.science.batched``), each with its own initialization, splits, batches and random starts,
    exactly as its own ``run_trial`` would (dropout and noise draws aside). ``report(seed, step,
    metrics)`` is called for each seed at every evaluation. A seed whose loss turns NaN/inf is in ``failed`` while
    the others train on. ``model_path`` must hold ``{seed}`` (one file per seed). ``threads``: as
    for ``run_trial``."""
    cfg = TrialConfig.from_mapping({**dict(config or {}), "seeds": list(seeds)})
    lanes = [cfg.model_copy(update={"seed": s, "seeds": None, "model_path": cfg.model_path and
                                    cfg.model_path.replace("{seed}", str(s))}) for s in cfg.seeds or []]
    each = None if report is None else (lambda lane, step, m: report(lanes[lane].seed, step, m))
    result = _train(lanes, each, batched=True, threads=threads)
    return SeedsResult({lanes[i].seed: m for i, m in enumerate(result.metrics) if m is not None},
                       {lanes[i].seed: text for i, text in result.failed.items()})


def run_lanes(configs: list[Mapping[str, Any]], report: LaneReport | None = None, *,
              threads: int | None = None) -> LanesResult:
    """Several trials trained together as one batched model, one lane per config: the configs
    agree on everything but their lane settings (``config.LANE_SETTINGS``: seed, eps, alpha, xi,
    noise_sigma), and each lane trains exactly as ``run_trial(configs[i])`` would (dropout and
    noise draws aside). ``report(lane, step, metrics)`` is called for each lane (its index in
    ``configs``) at every evaluation. A lane whose loss turns NaN/inf is in ``failed`` (its metrics None) while the others train on.
    Raises ConfigError naming the settings where two configs differ structurally. ``threads``: as
    for ``run_trial``."""
    if not configs:
        raise ConfigError(["configs: run_lanes needs at least one trial config"])
    lanes = [TrialConfig.from_mapping(c) for c in configs]
    for i, c in enumerate(lanes):
        if c.seeds is not None:
            raise ConfigError([f"configs[{i}].seeds: a lane is one trial (one seed); give each seed its own lane"])
    base = lane_structure(lanes[0].model_dump(mode="json"))
    for i, c in enumerate(lanes[1:], 1):
        other = lane_structure(c.model_dump(mode="json"))
        diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
        if diff:
            raise ConfigError([f"configs[{i}].{k}: lanes may differ only in {', '.join(LANE_SETTINGS)}; "
                               f"{k} is {other.get(k)!r} here and {base.get(k)!r} in configs[0]" for k in diff])
    paths = [c.model_path for c in lanes if c.model_path]
    if len(set(paths)) != len(paths):
        raise ConfigError(["model_path: each lane needs its own file"])
    return _train(lanes, report, batched=len(lanes) > 1, threads=threads)


def _train(lanes: list[TrialConfig], report: LaneReport | None, batched: bool,
           threads: int | None = None) -> LanesResult:
    """Train ``lanes`` with the thread policy of ``vat_study.science.threads``."""
    try:
        n = trial_threads(threads)
    except ValueError as e:
        raise ConfigError([str(e)]) from None
    with torch_threads(n):
        return _train_lanes(lanes, report, batched)


def _train_lanes(lanes: list[TrialConfig], report: LaneReport | None, batched: bool) -> LanesResult:
    device = resolve_device(lanes[0].task.device)
    lanes = [resolve_precision(c, device) for c in lanes]  # task.precision auto: what this hardware runs
    cfg = lanes[0]
    dtype = getattr(torch, cfg.task.dtype)
    t_start = time.perf_counter()
    n = len(lanes)

    prepared = prepare_data(cfg, device)
    ds, x_train, y_train = prepared.dataset, prepared.x_train, prepared.y_train
    x_test, y_test = prepared.x_test, prepared.y_test
    by_seed = {cfg.seed: prepared.splits}
    for c in lanes[1:]:
        if c.seed not in by_seed:
            by_seed[c.seed] = seed_splits(c, ds, c.seed)
    splits = [by_seed[c.seed] for c in lanes]
    if cfg.task.zca and n > 1 and any(not torch.equal(sp.unlabeled, splits[0].unlabeled) for sp in splits):
        raise ConfigError(["seeds: task.zca is fitted on each seed's own unlabeled pool; train these seeds separately"])

    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        models = []
        for c in lanes:  # each lane's initialization exactly as its own run draws it
            torch.manual_seed(c.seed)
            np.random.seed(c.seed % 2**32)
            models.append(_build(c, ds).to(device, dtype))
        model = LaneBatch(models) if batched else models[0]
        del models
        reports = None if report is None else [functools.partial(report, i) for i in range(n)]
        with subnormals.flushed():  # changes no number where none arises; spares a slow CPU path where one does
            results = train_lanes(lanes, x_train, y_train, splits, model, reports, test=(x_test, y_test))
    wall = time.perf_counter() - t_start
    out: list[dict[str, Any] | None] = []
    failed: dict[int, str] = {}
    for i, (c, outcome) in enumerate(zip(lanes, results)):
        if outcome.diverged is not None:
            failed[i] = outcome.diverged
            out.append(None)
            continue
        metrics = outcome.metrics
        if c.model_path:  # weights only (a state_dict): load with torch.load(..., weights_only=True)
            save_weights(model.lane_state_dict(i) if batched else model.state_dict(), Path(c.model_path))
        metrics.update(
            steps=cfg.task.steps,
            wall_seconds=wall / n,
            n_labeled=len(splits[i].labeled),
            n_validation=len(splits[i].validation),
            device=str(device),
            precision=c.task.precision,
        )
        if batched:
            metrics["lanes"] = n
        out.append(metrics)
    return LanesResult(out, failed)


def save_weights(state: Mapping[str, Any], path: Path) -> None:
    """``state`` written to ``path`` whole or not at all: serialized in memory, written to a
    temporary name in the same folder, then renamed over ``path`` (a full disk or a kill leaves
    no partial file); an OSError names ``path``."""
    import io
    import os

    buf = io.BytesIO()
    torch.save(state, buf)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def seed_splits(cfg: TrialConfig, ds: Dataset, seed: int) -> Splits:
    n_validation = cfg.task.validation if cfg.task.validation is not None else min(1000, len(ds.y_train) // 5)
    try:
        return make_splits(ds.y_train, cfg.task.n_labeled, n_validation, seed, ds.n_classes)
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
    dtype = getattr(torch, cfg.task.dtype)
    try:
        ds = load_dataset(cfg.task.dataset, root=cfg.task.data_root, download=cfg.task.download, idx_paths=cfg.task.idx_paths)
    except DataError as e:
        raise ConfigError([str(e)]) from None
    splits = seed_splits(cfg, ds, cfg.seed)
    x_train, x_test = ds.x_train, ds.x_test
    if cfg.task.zca:
        if not ds.is_image:
            raise ConfigError([f"task.zca: needs image data; dataset {cfg.task.dataset!r} is not"])
        zca = ZCA(x_train[splits.unlabeled])  # fitted on training images only, never validation or test
        x_train, x_test = zca(x_train), zca(x_test)
    return PreparedData(ds, splits, x_train.to(device, dtype), ds.y_train.to(device),
                        x_test.to(device, dtype), ds.y_test.to(device))


def build_for(config: Mapping[str, Any], ds: Dataset) -> torch.nn.Module:
    """The trial's network, untrained, on the CPU, for ``ds``'s input shape (what the preflight
    and the dry run's timing build); ConfigError (task.model) where the model cannot take it."""
    return _build(TrialConfig.from_mapping(config), ds)


def _build(cfg: TrialConfig, ds: Dataset) -> torch.nn.Module:
    try:
        return build_model(cfg.task.model, ds.input_shape, ds.n_classes, hidden=cfg.task.hidden,
                           top_bn=bool(cfg.task.top_bn), noise_sigma=cfg.task.noise_sigma, dropout=cfg.task.dropout)
    except ValueError as e:
        raise ConfigError([f"task.model: {e}"]) from None


def load_trained(config: Mapping[str, Any], model_path: str | None = None) -> tuple[torch.nn.Module, PreparedData]:
    """A trained model (eval mode, CPU) and its data, from a trial's config and saved weights
    (``model_path`` or the config's own); for analyses that need the model itself (Fig. 1, 5, 6)."""
    cfg = TrialConfig.from_mapping(upgrade_stored_config(config))
    cfg = cfg.model_copy(update={"task": cfg.task.model_copy(update={"device": "cpu"})})
    path = model_path or cfg.model_path
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"no saved weights at {path!r} (run the study with save_models: true)")
    data = prepare_data(cfg)
    model = _build(cfg, data.dataset).to(dtype=getattr(torch, cfg.task.dtype))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), data
