"""The preflight: before any trial, Ray start or store write, every dataset a study needs is
located (downloaded once, in the driver, where ``download: true`` says so) and every trial's
split is checked against the data that exists. Problems are ``SpecError`` lines naming the
study-file field; ``vat-study run`` prints them and exits 2 having written nothing.

Platform side: it reaches the science only through the surface (its loading, splitting and
model-building functions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import surface
from ..surface import ConfigError, DataError, DataFileError, TrialConfig, param_path
from .spec import SpecError, StudySpec, canonical, search_points


@dataclass
class Preflight:
    """What the preflight found: each dataset's size, and what a dry run would download."""

    datasets: dict[str, int] = field(default_factory=dict)  # "mnist (root)" -> training images
    downloads: list[str] = field(default_factory=list)  # datasets a real run downloads first
    first: Any = field(default=None, repr=False)  # the Dataset of the study's first search point (None: not there yet)


def _field(params: Mapping[str, Any], key: str) -> str:
    """The study-file field a task setting came from: a search point's, or the task's."""
    for k in params:
        if param_path(k) == f"task.{key}":
            return f"search point {canonical(dict(params))} ({k})"
    return f"task.{key}"


def _root(cfg: Mapping[str, Any]) -> str:
    return str(surface.data_root(cfg.get("data_root")).resolve())


def _model_takes(config: TrialConfig, ds: Any, seen: dict[str, str | None],
                 params: Mapping[str, Any]) -> str | None:
    """Whether the trial's model builds for the dataset's inputs and a forward pass of two of its
    images goes through (eval mode, no gradient); the problem, naming task.model, if not."""
    import torch

    task = config.task
    key = canonical([task.model, task.hidden, task.top_bn, task.dropout, task.noise_sigma, list(ds.input_shape),
                     ds.n_classes])
    if key not in seen:
        where = f"{_field(params, 'model')}: {task.model!r}"
        what = f"the {task.dataset!r} inputs of shape {list(ds.input_shape)}"
        try:
            model = surface.build_for(config, ds)
            model.eval()
            with torch.no_grad():
                model(ds.x_train[:2].float())
            seen[key] = None
        except ConfigError as e:
            seen[key] = f"{where} cannot take {what}: {e.problems[0].removeprefix('task.model: ')}"
        except (RuntimeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            seen[key] = f"{where} cannot take {what} (a forward pass fails: {first})"
    return seen[key]


def _load(params: Mapping[str, Any], cfg: Mapping[str, Any], download: bool, result: Preflight,
          problems: list[str]) -> Any:
    """The dataset of one search point's task (``cfg``), located (downloaded where it says so and
    ``download``); None where it is not there (a problem, or a download a real run makes)."""
    name = cfg["dataset"]
    label = f"{name} ({_root(cfg)})" if surface.datasets.REGISTRY[name].files else name
    try:
        ds = surface.load_dataset(name, root=_root(cfg), download=False, idx_paths=cfg.get("idx_paths"))
    except DataError as e:
        ds = None
        if isinstance(e, DataFileError) or not cfg.get("download"):  # a defective file: no download helps
            problems.append(f"{_field(params, 'dataset')}: {e}")
        elif not download:
            result.downloads.append(label)
        else:
            try:
                ds = surface.load_dataset(name, root=_root(cfg), download=True, idx_paths=cfg.get("idx_paths"))
            except Exception as e2:  # noqa: BLE001  torchvision raises several kinds offline
                problems.append(f"{_field(params, 'download')}: dataset {name!r} is not under "
                                f"data_root={_root(cfg)!r} and downloading it failed ({e2}); offline, put "
                                f"its files there, or point task.data_root (or VAT_STUDY_DATA) at them")
    if ds is not None:
        result.datasets[label] = len(ds.y_train)
    return ds


def _split_problem(spec: StudySpec, params: Mapping[str, Any], cfg: Mapping[str, Any], ds: Any) -> str | None:
    """What is wrong with a search point's split of ``ds`` (validation, n_labeled, a seed's
    class balance), or None."""
    n, name = len(ds.y_train), cfg["dataset"]
    validation = cfg["validation"] if cfg["validation"] is not None else min(1000, n // 5)
    if validation >= n:
        return f"{_field(params, 'validation')}: must be less than the {n} training images of {name!r}, got {validation}"
    n_labeled = cfg["n_labeled"]
    if n_labeled is not None and not (ds.n_classes <= n_labeled <= n - validation):
        return (f"{_field(params, 'n_labeled')}: must be between {ds.n_classes} (one per class) and {n - validation} "
                f"({name!r} has {n} training images, {validation} of them for validation), got {n_labeled}")
    for seed in spec.seeds:  # class balance can fail for one seed's draw only
        try:
            surface.make_splits(ds.y_train, n_labeled, validation, seed, ds.n_classes)
        except DataError as e:
            return f"{_field(params, 'n_labeled')}: seed {seed}: {e}"
    return None


def run_preflight(spec: StudySpec, *, download: bool = True) -> Preflight:
    """Locate each dataset (``download``: fetch the missing ones whose trials say ``download:
    true``; False, as in a dry run: only note them) and check each trial's split."""
    result = Preflight()
    problems: list[str] = []
    loaded: dict[str, Any] = {}  # data key -> Dataset, or None when it will be downloaded
    models: dict[str, str | None] = {}  # (model settings, input shape) -> the problem found, if any
    for params in search_points(spec):
        config = spec.resolved(params, spec.seeds[0])
        cfg = config.task.model_dump(mode="json")
        key = canonical([cfg["dataset"], _root(cfg), cfg.get("idx_paths")])
        if key not in loaded:
            loaded[key] = _load(params, cfg, download, result, problems)
        ds = loaded[key]
        if ds is None:
            continue
        if result.first is None:
            result.first = ds
        problem = _model_takes(config, ds, models, params) or _split_problem(spec, params, cfg, ds)
        if problem:
            problems.append(problem)
    seen: set[str] = set()
    uniq = [p for p in problems if not (p in seen or seen.add(p))]
    if uniq:
        raise SpecError(uniq, "study data")
    return result
