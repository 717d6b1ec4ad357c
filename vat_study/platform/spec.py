"""Study files: schema, validation with field-level errors, ``--set`` overrides, trial expansion.

A study file (YAML, loaded with ``yaml.safe_load``) has:

    name        identifier of the study in the store ([A-Za-z0-9_.-]+, not starting with '.' or '-')
    task        the trial config's task: dataset, mode, n_labeled, validation, model, steps,
                batch, optimizer, eval_every, device, ... (vat_study.science.config.Task)
    method      {name: vat, eps, alpha, xi, power_iterations, direction, implementation}: the
                method and its settings (vat_study.science.methods: each method's own settings model)
    search      null (one configuration), {grid: [{key: [values]}, ...]} (each grid expanded as a
                cartesian product; several grids in one study, duplicates run once), or
                {optuna: {sampler: tpe|random|grid, n_trials, seed, pruner: median|hyperband,
                space: {key: distribution}}}
                with distributions {type: uniform|log_uniform|int|choice, low, high | choices}
    seeds       every configuration runs once per seed (the seeded repeats)
    metric      {name: val_error, mode: min|max, allow_test_selection: false}: what "best" means
                and what Optuna optimizes; a test-set metric (test_error) is refused unless
                allow_test_selection is true, a validation metric when task.validation is 0
    probes      trial probes (rvadv, grad_variance, fidelity)
    executor    {kind: ray|local, per_trial: {cpu, gpu}, max_concurrent, address,
                 trial_timeout (s: a trial past it is stopped and recorded FAILED, kind timeout),
                 max_failures (ray: retries of a trial whose worker process died; default 2),
                 lanes (train up to this many trials differing only in seed, eps, alpha, xi,
                 noise_sigma as one batched model), batch_seeds (the same for the seeds of one
                 configuration only), heartbeat_every (s, default 5), stale_after (s, default 60:
                 a driver silent that long is dead, and other drivers redo its RUNNING trials)}
    storage     SQLAlchemy URL (default $VAT_STUDY_STORAGE, else sqlite:///results/vat_study.db)
    sequential  {compare: [[a, b], ...], max_seeds, batch, alpha, metric, mode}: add paired
                seeds until each comparison is decided (vat_study.platform.group_sequential)

A trial config is nested exactly as task / method / probes are written here, so study fields and
config fields are one vocabulary. A search key is a dotted path into the trial config whose
section may be left out where its first name says which (``eps`` is ``method.eps``, ``steps`` is
``task.steps``, ``method`` is ``method.name``; ``config.param_path``). Every trial's config is
validated before anything runs; errors name the study-file field.
Running a stored study again continues it; a study file edited under the same name (task,
method, probes, or anything that changes a finished trial's resolved config) is refused rather
than mixed with the finished trials (see executors.planning.check_same_study / check_same_configs).
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..common.validation import Strict, finite
from ..common.errors import format_validation_error
from ..surface import ConfigError, param_path
from .store.urls import (  # noqa: F401  (re-exported)
    DEFAULT_STORAGE,
    STORAGE_ENV,
    STORAGE_HELP,
    absolute_sqlite,
    check_storage_url,
    default_storage,
)
from ..common.yamlio import (  # noqa: F401  (re-exported)
    FileRefused,
    YAMLLimitError,
    canonical,
    digest,
    read_text,
    safe_load,
    set_dotted,
)


def check_study_name(v: str) -> str:
    """``v`` if it names a study (and its folder results/<name>/, which it can never leave), else
    ValueError saying what is allowed: letters, digits, '_', '.', '-', not starting with '.' or '-'
    (so '.', '..' and hidden names are refused, and the name never reads as a command-line flag)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", v):
        raise ValueError("must be 1-100 characters of letters, digits, '_', '.', '-' (no '/', spaces or "
                         "other characters)")
    if v[0] in ".-":
        raise ValueError(f"must start with a letter, digit or '_' (a name starting with {v[0]!r}, like '.' or "
                         f"'..', would be a hidden folder or leave results/)")
    return v


class SpecError(ValueError):
    """An invalid study file or override; ``str(e)`` lists every problem with its field."""

    def __init__(self, problems: list[str], source: str = "study") -> None:
        shown = [_capped(p) for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problem(s)")
        self.problems = shown
        super().__init__(f"invalid {_capped(source, 300)}:\n" + "\n".join(f"  - {p}" for p in shown))


MAX_PROBLEMS = 30
"""The most problems one error lists; each is capped at ``MAX_PROBLEM_CHARS``."""
MAX_PROBLEM_CHARS = 600


def _capped(text: str, most: int = MAX_PROBLEM_CHARS) -> str:
    return text if len(text) <= most else text[: most - 40] + f" ... ({len(text) - most + 40:,} characters cut)"




class Distribution(Strict):
    type: Literal["uniform", "log_uniform", "int", "choice"]
    low: float | None = Field(None, description="uniform, log_uniform, int: the lowest value")
    high: float | None = Field(None, description="uniform, log_uniform, int: the highest value")
    step: int | None = Field(None, ge=1, description="int: the spacing")
    log: bool = Field(False, description="int: sample on a log scale")
    choices: list[Any] | None = Field(None, description="choice: the values, e.g. [baseline, vat]")

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.type == "choice":
            if not self.choices:
                raise ValueError("choices: a non-empty list is required for type 'choice'")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"low and high are required for type {self.type!r}")
            if not self.low < self.high:
                raise ValueError(f"low must be < high (got low={self.low}, high={self.high})")
            if self.type == "log_uniform" and self.low <= 0:
                raise ValueError(f"low must be > 0 for log_uniform (got {self.low})")
            if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
                raise ValueError("low and high must be integers for type 'int'")
        return self

    def endpoints(self) -> list[Any]:
        if self.type == "choice":
            return list(self.choices or [])
        if self.type == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        return [self.low, self.high]


PRUNERS = ("median", "hyperband")
"""``search.optuna.pruner``: Optuna's MedianPruner and HyperbandPruner, with Optuna's defaults."""


class OptunaSearch(Strict):
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    n_trials: int = Field(ge=1, description="configurations to ask for (each runs once per seed)")
    seed: int | None = Field(0, description="the sampler's seed")
    space: dict[str, Distribution] = Field(description="search key -> distribution, e.g. "
                                                       "space: {eps: {type: log_uniform, low: 0.1, high: 10}}")
    pruner: str | None = Field(None, description="median | hyperband: stop configurations whose intermediate "
                                                 "values (metric.name at each evaluation, mean over seeds) trail "
                                                 "(Optuna's MedianPruner / HyperbandPruner); null: none")

    @field_validator("pruner")
    @classmethod
    def _known_pruner(cls, v: str | None) -> str | None:
        if v is not None and v not in PRUNERS:
            raise ValueError(f"must be one of {', '.join(PRUNERS)} (or null: no pruning)")
        return v

    @field_validator("space")
    @classmethod
    def _nonempty(cls, v: dict[str, Distribution]) -> dict[str, Distribution]:
        if not v:
            raise ValueError("must name at least one parameter")
        return v

    @model_validator(mode="after")
    def _grid_needs_choices(self) -> OptunaSearch:
        if self.sampler == "grid":
            bad = [k for k, d in self.space.items() if d.type not in ("choice", "int")]
            if bad:
                raise ValueError(f"space: the grid sampler needs 'choice' or 'int' distributions; {bad} are continuous")
        return self


class Search(Strict):
    grid: list[dict[str, list[Any]]] | None = Field(
        None, description="a list of grid blocks, each {key: [values]} expanded as a cartesian product; several "
                          "blocks in one study, a point in two blocks runs once: grid: [{eps: [1, 2]}]")
    optuna: OptunaSearch | None = Field(None, description="a search Optuna's sampler chooses the points of")

    @model_validator(mode="after")
    def _one(self) -> Search:
        if (self.grid is None) == (self.optuna is None):
            raise ValueError("give exactly one of 'grid' or 'optuna'")
        if self.grid is not None and not self.grid:
            raise ValueError("grid: give at least one grid, e.g. grid: [{eps: [0.5, 1.0]}]")
        for i, g in enumerate(self.grid or []):
            for k, vals in g.items():
                if not isinstance(vals, list) or not vals:
                    raise ValueError(f"grid[{i}].{k}: must be a non-empty list of values")
        return self


class Metric(Strict):
    name: str = Field("val_error", description="a final metric every trial reports (val_error, test_error, rvadv, "
                                               "...): what 'best' means and what Optuna optimizes")
    mode: Literal["min", "max"] = Field("min", description="min: lower is better")
    allow_test_selection: bool = Field(False, description="let a test-set metric (test_*) choose hyperparameters; "
                                                          "off: such a study is refused (spec_checks)")


class PerTrial(Strict):
    cpu: float = Field(1.0, gt=0, description="CPUs per trial; also its torch threads")
    gpu: float | Literal["auto"] = Field(
        "auto", description="GPUs per trial (a fraction packs several trials on one GPU); 'auto': "
                            "auto_gpu when the Ray cluster has GPUs, 0 when it has none")
    auto_gpu: float = Field(0.25, gt=0, le=1, description="the GPU fraction per trial that gpu: auto takes on a GPU cluster")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and (v < 0 or not math.isfinite(v)):
            raise ValueError("must be 'auto' or a number of GPUs >= 0")
        return v


class Executor(Strict):
    kind: Literal["ray", "local"] = Field("ray", description="ray: Ray Tune; local: in-process, one trial after another")
    per_trial: PerTrial = PerTrial()
    max_concurrent: int | None = Field(None, ge=1, description="default: as many as the resources allow")
    address: str | None = Field(None, description="a Ray cluster to join ('auto': the one ray start runs here); "
                                                  "default: a fresh local Ray")
    trial_timeout: float | None = Field(None, gt=0, description="seconds; a trial past it is stopped, FAILED (timeout)")
    max_failures: int = Field(2, ge=0, description="ray: retries of a trial whose worker process died")
    batch_seeds: int = Field(1, ge=1, le=64, description="train up to this many seeds of a configuration as one "
                                                         "batched model (1: each seed on its own); lanes "
                                                         "restricted to the seeds of one configuration")
    lanes: int = Field(1, ge=1, le=256, description="train up to this many trials that differ only in seed, eps, "
                                                    "alpha, xi, noise_sigma as one batched model (1: off)")
    heartbeat_every: float = Field(5.0, gt=0, le=3600, description="seconds between two heartbeats of a driver "
                                                                   "(several drivers share a study's trials)")
    stale_after: float = Field(60.0, gt=0, description="seconds without a heartbeat after which a driver is dead "
                                                       "and its RUNNING trials are redone by another driver")

    @field_validator("stale_after")
    @classmethod
    def _stale_after_beats(cls, v: float, info: ValidationInfo) -> float:
        every = info.data.get("heartbeat_every") or 5.0
        if v < 3 * every:
            raise ValueError(f"must be at least 3 x heartbeat_every ({3 * every:g} s), or a live driver's missed "
                             f"beat would read as dead; got {v:g}")
        return v

    @field_validator("lanes")
    @classmethod
    def _one_batching(cls, v: int, info: ValidationInfo) -> int:
        if v > 1 and (info.data.get("batch_seeds") or 1) > 1:
            raise ValueError("set either lanes (any lane settings) or batch_seeds (seeds of one configuration), "
                             "not both; lanes covers what batch_seeds does")
        return v

    checkpoint_every: int | Literal["auto"] | None = Field(
        "auto", description="updates between mid-trial checkpoints (a killed or stopped trial resumes from its "
                            "last one, with the same final metrics); auto: every 1,000 for trials of 10,000 "
                            "updates or more, none for shorter ones; null: never")

    @field_validator("checkpoint_every")
    @classmethod
    def _every(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be a number of updates >= 1, 'auto', or null (no checkpoints)")
        return v

    _fin = field_validator("trial_timeout")(finite)


class Sequential(Strict):
    """Seeded comparisons that decide (``vat_study.platform.group_sequential``): the study's ``seeds`` are the
    first look; each pair in ``compare`` (method names, each at its configuration chosen on the
    study metric at the first look) gets ``batch`` more paired seeds after every look that
    decides nothing, up to ``max_seeds``, with a group-sequential paired t-test holding the
    false-positive rate of each comparison at ``alpha`` over all looks."""

    compare: list[list[str]] = Field(description="pairs [a, b] of method names, e.g. [[rpt, vat], [baseline, vat]]")
    max_seeds: int = Field(20, ge=2, le=1000, description="the most paired seeds a comparison gets")
    batch: int = Field(2, ge=1, le=1000, description="seeds added after a look that decides nothing")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="false-positive rate of each comparison over all its looks")
    metric: str = Field("test_error", description="the final metric compared (chosen configurations: by metric.name)")
    mode: Literal["min", "max"] = Field("min", description="min: lower is better")

    @field_validator("compare")
    @classmethod
    def _pairs(cls, v: list[list[str]]) -> list[list[str]]:
        if not v:
            raise ValueError("give at least one pair, e.g. compare: [[rpt, vat]]")
        for i, pair in enumerate(v):
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"compare[{i}]: must be a pair of two different method names, e.g. [rpt, vat]; "
                                 f"got {pair!r}")
        return v


class PaperValue(Strict):
    """One value the paper reports, compared with the 95 % t interval over seeds of the study's
    configuration chosen on metric.name among the trials of ``method`` that match ``where``."""

    method: str = Field(description="a method name, or an implementation variant as the report names it "
                                    "('rpt (clean_stochastic=false)')")
    metric: str = Field("test_error", description="the final metric compared")
    value: float = Field(description="the paper's value; in percent for a metric ending in _error")
    sd: float | None = Field(None, ge=0, description="the paper's SD, shown beside it")
    where: dict[str, Any] = Field(default_factory=dict, description="only trials with these values, e.g. "
                                                                    "{power_iterations: 1}")
    label: str | None = Field(None, description="what the paper calls it (default: the method)")

    _fin = field_validator("value")(finite)


class PaperOrdering(Strict):
    """A comparison the paper makes: ``lower`` has the lower ``metric`` than ``higher`` (or,
    with ``tie: true``, the two do not differ), checked as a paired difference by seed with its
    95 % t interval."""

    lower: str = Field(description="the method (variant) the paper finds lower, e.g. vat")
    higher: str = Field(description="the method (variant) it is compared with, e.g. rpt")
    metric: str = "test_error"
    where_lower: dict[str, Any] = Field(default_factory=dict, description="filter of lower's trials")
    where_higher: dict[str, Any] = Field(default_factory=dict, description="filter of higher's trials")
    tie: bool = Field(False, description="the paper finds no difference (e.g. K = 2 against K = 1)")


class Paper(Strict):
    """The paper's values and orderings for a study (``paper:``): the report computes every
    verdict (agrees / does not, with the CI) from the trials, never from pasted text."""

    source: str = Field(description="where the values are in the paper, e.g. 'Table 1, supervised MNIST'")
    steps: int | None = Field(None, ge=1, description="the paper's budget in updates, shown beside ours")
    values: list[PaperValue] = Field(default_factory=list)
    orderings: list[PaperOrdering] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> Paper:
        if not self.values and not self.orderings:
            raise ValueError("give values or orderings, e.g. values: [{method: vat, value: 0.64, sd: 0.05}]")
        return self


class Tracking(Strict):
    """Experiment trackers each trial's config and per-step metrics go to (``vat_study.platform.tracking``),
    beside the store."""

    tensorboard: str | None = Field(None, description="a folder: TensorBoard event files in DIR/<study>/<trial>/ "
                                                      "(tensorboardX)")
    mlflow: str | bool | None = Field(None, description="true: the local MLflow store sqlite:///results/mlflow.db; "
                                                        "or a tracking URI, or a folder (MLflow's file store); one "
                                                        "run per trial in the experiment named after the study")
    wandb: str | None = Field(None, description="a Weights & Biases project (needs the wandb package)")

    @field_validator("tensorboard", "mlflow", "wandb")
    @classmethod
    def _installed(cls, v: Any, info: ValidationInfo) -> Any:
        from .tracking import missing_packages

        if v is False or (isinstance(v, str) and not v.strip()):
            if v is False:
                return None
            raise ValueError("must name a folder, URI or project (or be left out)")
        missing = missing_packages({info.field_name: v})
        if missing:
            raise ValueError(missing[0].split(": ", 1)[1])
        return v


class StudySpec(Strict):
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)

    name: str = Field(description="the study's identifier in the store and its report folder results/<name>/")
    description: str | None = Field(None, description="the question the study asks (what it reproduces, its "
                                                      "budget): its report opens with it")
    task: dict[str, Any] = Field(default_factory=dict)
    method: dict[str, Any] = Field(default_factory=lambda: {"name": "vat"})
    search: Search | None = Field(None, description="null: one configuration; else exactly one of grid or optuna")
    seeds: list[int] = Field(default_factory=lambda: [0], description="every configuration runs once per seed, "
                                                                       "e.g. seeds: [0, 1, 2]")
    metric: Metric = Metric()
    probes: dict[str, Any] | None = None
    executor: Executor = Executor()
    storage: str = Field(DEFAULT_STORAGE, description="SQLAlchemy URL of the store (sqlite:///FILE or "
                                                      "postgresql+psycopg://user@host:5432/db); left out: the "
                                                      "VAT_STUDY_STORAGE variable, else the default")
    sequential: Sequential | None = Field(None, description="add paired seeds until each comparison is decided")
    save_models: bool = Field(False, description="keep each trial's trained weights (a state_dict; needed by "
                                                 "Fig. 1, 5, 6)")
    models_dir: str | None = Field(None, description="where save_models writes them (one file per configuration "
                                                     "and seed); default: results/<name>/models")
    paper: Paper | None = Field(None, description="the paper's values for this study: the report's 'Against the "
                                                  "paper' section computes each verdict from the trials")
    tracking: Tracking | None = Field(None, description="experiment trackers: {tensorboard: DIR, mlflow: true | URI, "
                                                        "wandb: PROJECT}")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_study_name(v)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v or any(s < 0 for s in v) or len(set(v)) != len(v):
            raise ValueError("must be a non-empty list of distinct integers >= 0")
        return v

    @model_validator(mode="after")
    def _sequential(self) -> StudySpec:
        sq = self.sequential
        if sq is None:
            return self
        if self.search is not None and self.search.optuna is not None:
            raise ValueError("sequential: needs a grid study (search: grid) or none; Optuna chooses its own points")
        if not 2 <= len(self.seeds) <= sq.max_seeds:
            raise ValueError(f"sequential: the study's seeds are the first look: give 2 to max_seeds "
                             f"({sq.max_seeds}) of them, got {len(self.seeds)}")
        return self

    def seed_sequence(self) -> list[int]:
        """The seeds in the order a sequential comparison adds them (``sequential.seed_sequence``)."""
        from .group_sequential import seed_sequence

        return seed_sequence(self.seeds, self.sequential.max_seeds if self.sequential else None)

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        return absolute_sqlite(check_storage_url(v))

    # ---------------------------------------------------------------- trial configs

    def base_config(self) -> dict[str, Any]:
        """The trial config shared by every trial (task, method, probes as written), before search
        params and seed."""
        cfg = {"task": copy.deepcopy(self.task), "method": copy.deepcopy(self.method)}
        if self.probes is not None:
            cfg["probes"] = copy.deepcopy(self.probes)
        return cfg

    def trial_config(self, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
        cfg = self.base_config()
        for k, v in params.items():
            set_dotted(cfg, param_path(k) or k, v)
        cfg["seed"] = seed
        return cfg

    def configurations(self) -> list[dict[str, Any]]:
        """Grid points, each once: a point that resolves to the same trial config as an earlier
        one is left out (first occurrence kept), whether written twice across grids or inert
        where it lands (``{method: [baseline], eps: [1, 2]}``: baseline has no eps, so one
        baseline). [{}] without search. Optuna studies have no fixed list (their points come
        from the sampler)."""
        return self._grid_points()[0]

    def collapsed(self) -> int:
        """How many grid points ``configurations`` left out as the same trial as an earlier one."""
        return self._grid_points()[1]

    def _grid_points(self) -> tuple[list[dict[str, Any]], int]:
        if self.search is None:
            return [{}], 0
        if self.search.grid is None:
            return [], 0
        from ..surface import resolve_config

        seen, out, n = set(), [], 0
        for g in self.search.grid:
            keys = list(g)
            for values in itertools.product(*(g[k] for k in keys)):
                point = dict(zip(keys, values))
                n += 1
                try:  # the trial it trains (but the seed)
                    key = canonical({k: v for k, v in resolve_config(self.trial_config(point, 0)).items() if k != "seed"})
                except ValueError:  # an invalid point: kept, and refused by validate_trials with its field
                    key = canonical(point)
                if key not in seen:
                    seen.add(key)
                    out.append(point)
        return out, n - len(out)

    def expand(self) -> list[PlannedTrial]:
        """Every (configuration, seed) trial of a grid study, in order; configurations x seeds."""
        return [PlannedTrial.make(self, p, s) for p in self.configurations() for s in self.seeds]

    def planned_config_keys(self) -> set[str] | None:
        """The config_keys of the configurations this study file plans (a grid's points, or the one
        configuration of a study without search); None for an Optuna study, whose points come from
        its sampler. A stored trial outside them is not this study file's to redo."""
        return None if self.is_optuna else {config_key(p) for p in self.configurations()}

    @property
    def is_optuna(self) -> bool:
        return self.search is not None and self.search.optuna is not None


def config_key(params: Mapping[str, Any]) -> str:
    """The hash of a configuration's search parameters: what groups the seeds of one configuration."""
    return digest(dict(params))


@dataclass(frozen=True)
class PlannedTrial:
    key: str  # unique within the study: hash of (params, seed)
    config_key: str  # hash of params alone: groups the seeds of one configuration
    params: dict[str, Any]
    seed: int
    config: dict[str, Any]  # the full trial config handed to run_trial
    optuna_number: int | None = None  # the Optuna trial (configuration) it belongs to

    @staticmethod
    def make(spec: StudySpec, params: Mapping[str, Any], seed: int, optuna_number: int | None = None) -> PlannedTrial:
        params = dict(params)
        key = digest({"params": params, "seed": seed})
        config = spec.trial_config(params, seed)
        ck = config_key(params)
        if spec.save_models:
            folder = Path(spec.models_dir or Path("results") / spec.name / "models").resolve()
            config["model_path"] = str(folder / MODEL_FILE.format(config_key=ck, seed=seed))
        return PlannedTrial(key=key, config_key=ck, params=params, seed=seed, config=config,
                            optuna_number=optuna_number)


MODEL_FILE = "{config_key}-s{seed}.pt"
"""A trial's saved weights under models_dir: one file per (configuration, seed)."""


# -------------------------------------------------------------------- loading and validation

SHAPES: dict[tuple[str, ...], str] = {
    ("search",): "search holds one of grid or optuna: search: {grid: [{eps: [1, 2]}]}",
    ("search", "grid"): "grid is a list of blocks, each mapping a key to its values: grid: [{eps: [1, 2]}]",
    ("search", "grid", "*"): "each grid block maps a key to its values: grid: [{eps: [1, 2], alpha: [1]}]",
    ("search", "grid", "*", "*"): "a grid key takes a list of values: grid: [{eps: [1, 2]}]",
    ("search", "optuna"): "optuna: {sampler: tpe, n_trials: 20, space: {eps: {type: log_uniform, low: 0.1, high: 10}}}",
    ("search", "optuna", "space"): "space maps a key to a distribution: "
                                   "space: {eps: {type: log_uniform, low: 0.1, high: 10}}",
    ("search", "optuna", "space", "*"): "a distribution, e.g. {type: log_uniform, low: 0.1, high: 10} or, for a "
                                        "list of values, {type: choice, choices: [1, 2]}",
    ("seeds",): "seeds is a list of integers: seeds: [0, 1, 2]",
    ("metric",): "metric: {name: val_error, mode: min}",
    ("task",): "task is a mapping of settings: task: {dataset: digits, steps: 500}",
    ("method",): "method is a mapping with the method's name: method: {name: vat, eps: 2.0}",
    ("probes",): "probes is a mapping: probes: {rvadv: {eps: 2.0}}",
    ("executor",): "executor: {kind: local} or executor: {kind: ray, per_trial: {cpu: 1}}",
    ("executor", "per_trial"): "per_trial: {cpu: 1, gpu: auto}",
    ("sequential",): "sequential: {compare: [[baseline, vat]], max_seeds: 12}",
    ("sequential", "compare"): "compare is a list of pairs: compare: [[baseline, vat], [rpt, vat]]",
    ("sequential", "compare", "*"): "compare is a list of pairs: compare: [[baseline, vat], [rpt, vat]]",
    ("paper", "values"): "values is a list: values: [{method: vat, value: 0.64, sd: 0.05}]",
    ("paper", "values", "*"): "a paper value: {method: vat, metric: test_error, value: 0.64, sd: 0.05}",
    ("paper", "orderings"): "orderings is a list: orderings: [{lower: vat, higher: rpt}]",
}
"""The right shape of a study-file field, shown with an error that the value is of the wrong kind."""


def _shape(loc: tuple[str, ...]) -> str | None:
    """The ``SHAPES`` entry of a field location (``*``: any list index or key)."""
    if loc[:1] == ("search",) and len(loc) == 2 and loc[1] not in ("grid", "optuna"):  # search: {eps: [...]}
        return SHAPES[("search",)]
    for pattern, text in SHAPES.items():
        if len(pattern) == len(loc) and all(p in ("*", x) for p, x in zip(pattern, loc)):
            return text
    return None



def parse_spec(data: Any, overrides: Mapping[str, Any] | None = None, source: str = "study") -> StudySpec:
    if not isinstance(data, Mapping):
        raise SpecError([f"the study file must hold a mapping (name, task, method, search, ...), got {type(data).__name__}"], source)
    data = copy.deepcopy(dict(data))
    for k, v in (overrides or {}).items():
        set_dotted(data, k, v)
    if "storage" not in data:  # left out: the default store (VAT_STUDY_STORAGE, else results/vat_study.db)
        try:
            data["storage"] = default_storage()
        except ValueError as e:
            raise SpecError([str(e)], source) from None
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        from ..common.errors import model_keys

        raise SpecError(format_validation_error(e, shapes=_shape, known=model_keys(StudySpec)), source) from None
    from .spec_checks import validate_trials

    validate_trials(spec)
    return spec


def load_spec(path: str | Path, overrides: Mapping[str, Any] | None = None) -> StudySpec:
    path = Path(path)
    try:
        text = read_text(path)  # a regular file under the size bound: /dev/zero or a FIFO is refused, not read
    except FileRefused as e:
        raise SpecError([f"study file {e}"], str(path)) from None
    except OSError as e:
        raise SpecError([f"cannot read study file {str(path)!r}: {e.strerror}"], str(path)) from None
    except UnicodeDecodeError as e:
        raise SpecError([f"the study file is not UTF-8 text (byte {e.start}): save it as UTF-8 YAML"], str(path)) from None
    try:
        data = safe_load(text)
    except YAMLLimitError as e:
        raise SpecError([str(e)], str(path)) from None
    except yaml.YAMLError as e:
        raise SpecError([f"not valid YAML: {_capped(str(e))}"], str(path)) from None
    return parse_spec(data, overrides, str(path))


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set task.steps=3000`` -> {"task.steps": 3000}; values are YAML scalars or lists.

    Conflicting overrides are refused: the same key twice with different values, or a key and
    a key inside it (``--set task={...} --set task.steps=3``), whose outcome would depend on order."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise SpecError([f"--set {item!r}: expected key=value with a dotted key, e.g. --set task.steps=3000"],
                            "--set")
        try:
            value = safe_load(raw) if raw.strip() else None
        except YAMLLimitError as e:  # (an integer of 120,000 digits: said, never converted)
            raise SpecError([f"--set {key}: {str(e).replace(' (line 1)', '')}"], "--set") from None
        except yaml.YAMLError as e:
            why = getattr(e, "problem", None) if isinstance(e, yaml.constructor.ConstructorError) else None
            raise SpecError([f"--set {item!r}: the value is not valid YAML" + (f" ({why})" if why else "")],
                            "--set") from None
        for other in out:
            if other == key and canonical(out[other]) != canonical(value):
                problems.append(f"--set {key}: given twice with different values ({out[other]!r} and {value!r}); "
                                "give it once")
            elif other.startswith(key + ".") or key.startswith(other + "."):
                inner, outer = (other, key) if other.startswith(key + ".") else (key, other)
                problems.append(f"--set {inner} conflicts with --set {outer} (one sets a part of the other); "
                                f"give only one of them")
        out[key] = value
    if problems:
        raise SpecError(problems, "--set")
    return out


__all__ = ["StudySpec", "PlannedTrial", "SpecError", "ConfigError", "load_spec", "parse_spec", "parse_set",
           "DEFAULT_STORAGE", "STORAGE_ENV", "default_storage"]
