"""A study's trials: each trial's config (the study file's task / method / probes, a search
point's values, the seed), resolved once, and the grid expanded into planned trials.

A trial config is resolved (validated, every default filled in: ``surface.TrialConfig``) once per
study object and kept (``resolved``): the grid's de-duplication, the study file's checks, the
preflight, the budget, planning, the store, lane grouping, trackers and the trainer all use that
one object (the trainer takes a ``TrialConfig`` as it is). Nothing here imports the schema: the
study is any object with the ``StudySpec`` fields these functions read."""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...common.yamlio import canonical, digest, set_dotted
from ...surface import TrialConfig, param_path

MODEL_FILE = "{config_key}-s{seed}.pt"
"""A trial's saved weights under models_dir: one file per (configuration, seed)."""


def config_key(params: Mapping[str, Any]) -> str:
    """The hash of a configuration's search parameters: what groups the seeds of one configuration."""
    return digest(dict(params))


def base_config(spec: Any) -> dict[str, Any]:
    """The trial config shared by every trial (task, method, probes as written), before search
    params and seed."""
    cfg = {"task": copy.deepcopy(spec.task), "method": copy.deepcopy(spec.method)}
    if spec.probes is not None:
        cfg["probes"] = copy.deepcopy(spec.probes)
    return cfg


def trial_config(spec: Any, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The trial config of one search point and seed, as written (not resolved)."""
    cfg = base_config(spec)
    for k, v in params.items():
        set_dotted(cfg, param_path(k) or k, v)
    cfg["seed"] = seed
    return cfg


def resolved(spec: Any, params: Mapping[str, Any], seed: int) -> TrialConfig:
    """The resolved trial config of one search point and seed: validated once per study object
    (kept under the config as written, so an edited copy of the study resolves afresh); raises
    ``ConfigError`` naming each bad field."""
    written = trial_config(spec, params, seed)
    key = canonical(written)
    cache = spec.resolved_cache()
    if key not in cache:
        cache[key] = TrialConfig.from_mapping(written)
    return cache[key]


def grid_points(spec: Any) -> tuple[list[dict[str, Any]], int]:
    """(the study's configurations, how many grid points were left out as the same trial as an
    earlier one); computed once per study object (``StudySpec.configurations``)."""
    cache = spec.resolved_cache()
    key = ("grid points", canonical([spec.task, spec.method, spec.probes, spec.search.grid if spec.search else None]))
    if key not in cache:
        cache[key] = _grid_points(spec)
    points, collapsed = cache[key]
    return [dict(p) for p in points], collapsed


def _grid_points(spec: Any) -> tuple[list[dict[str, Any]], int]:
    if spec.search is None:
        return [{}], 0
    if spec.search.grid is None:
        return [], 0
    seen, out, n = set(), [], 0
    for g in spec.search.grid:
        keys = list(g)
        for values in itertools.product(*(g[k] for k in keys)):
            point = dict(zip(keys, values))
            n += 1
            try:  # the trial it trains (but the seed)
                config = resolved(spec, point, spec.seeds[0]).model_dump(mode="json")
                key = canonical({k: v for k, v in config.items() if k != "seed"})
            except ValueError:  # an invalid point: kept, and refused by validate_trials with its field
                key = canonical(point)
            if key not in seen:
                seen.add(key)
                out.append(point)
    return out, n - len(out)


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of a study: its key, its configuration's key, its search parameters and seed, and
    its resolved config (``resolved``: what the store records, what trains; ``config``: the same
    as a plain dict)."""

    key: str  # unique within the study: hash of (params, seed)
    config_key: str  # hash of params alone: groups the seeds of one configuration
    params: dict[str, Any]
    seed: int
    resolved: TrialConfig  # the trial's config, resolved once (``trials.resolved``)
    optuna_number: int | None = None  # the Optuna trial (configuration) it belongs to

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        """The resolved config as a plain, JSON-able dict (what the store keeps)."""
        return self.resolved.model_dump(mode="json")

    @staticmethod
    def make(spec: Any, params: Mapping[str, Any], seed: int, optuna_number: int | None = None) -> PlannedTrial:
        params = dict(params)
        ck = config_key(params)
        config = resolved(spec, params, seed)
        if spec.save_models:  # (a plain string setting: set on the resolved config, as validation would)
            folder = Path(spec.models_dir or Path("results") / spec.name / "models").resolve()
            config = config.model_copy(update={"model_path": str(folder / MODEL_FILE.format(config_key=ck, seed=seed))})
        return PlannedTrial(key=digest({"params": params, "seed": seed}), config_key=ck, params=params, seed=seed,
                            resolved=config, optuna_number=optuna_number)


def expand(spec: Any) -> list[PlannedTrial]:
    """Every (configuration, seed) trial of a grid study, in order; configurations x seeds."""
    return [PlannedTrial.make(spec, p, s) for p in spec.configurations() for s in spec.seeds]
