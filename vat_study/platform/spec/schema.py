"""The study file's schema: ``StudySpec`` and its blocks (metric, executor, sequential, paper,
tracking; the search in ``space``), validated strictly. What a study's trials are (configs,
grid points, planned trials) is ``trials``; reading a file is ``loading``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, ValidationInfo, create_model, field_validator, model_validator

from ...common.validation import Strict, finite
from ..executors.registry import DEFAULT as DEFAULT_EXECUTOR, executor_named, executor_settings, summaries
from ..tracking import REGISTRY as TRACKERS, validate_tracking
from ..store.urls import DEFAULT_STORAGE, absolute_sqlite, check_storage_url
from . import trials
from .space import Search
from .trials import PlannedTrial, config_key

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




class Metric(Strict):
    name: str = Field("val_error", description="a final metric every trial reports (val_error, test_error, rvadv, "
                                               "...): what 'best' means and what Optuna optimizes")
    mode: Literal["min", "max"] = Field("min", description="min: lower is better")
    allow_test_selection: bool = Field(False, description="let a test-set metric (test_*) choose hyperparameters; "
                                                          "off: such a study is refused (spec.checks)")


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


class ExecutorCommon(Strict):
    """The ``executor:`` keys every executor reads (``Executor`` adds each registered executor's own)."""

    kind: str = Field(DEFAULT_EXECUTOR, description=summaries())
    per_trial: PerTrial = PerTrial()
    trial_timeout: float | None = Field(None, gt=0, description="seconds; a trial past it is stopped, FAILED (timeout)")
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

    @field_validator("kind")
    @classmethod
    def _registered(cls, v: str) -> str:
        return executor_named(v).name  # asked at validation time: an executor registered at run time is allowed


Executor = create_model("Executor", __base__=ExecutorCommon, **executor_settings())
"""The ``executor:`` block: the common keys and those of each executor of the registry (``ray``'s
address, max_concurrent, max_failures)."""


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


class StudySpec(Strict):
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)
    _resolved: dict[Any, Any] = PrivateAttr(default_factory=dict)  # (``trials``: resolved once per study object)

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
    tracking: dict[str, Any] | None = Field(None, description="experiment trackers: "
                                                              + ", ".join(TRACKERS) + "; each key a tracker, its value "
                                                              "where its runs go")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_study_name(v)

    @field_validator("tracking", mode="plain")
    @classmethod
    def _trackers(cls, v: Any) -> dict[str, Any] | None:
        return validate_tracking(v)  # asked at validation time: a tracker registered at run time is allowed

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
        from ..group_sequential import seed_sequence

        return seed_sequence(self.seeds, self.sequential.max_seeds if self.sequential else None)

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        return absolute_sqlite(check_storage_url(v))

    # ---------------------------------------------------------------- trial configs (``trials``)

    def resolved_cache(self) -> dict[Any, Any]:
        """What ``trials`` computed once for this study object: resolved trial configs, grid points."""
        return self._resolved

    def base_config(self) -> dict[str, Any]:
        return trials.base_config(self)

    def trial_config(self, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
        return trials.trial_config(self, params, seed)

    def resolved(self, params: Mapping[str, Any], seed: int):
        """The resolved trial config (``surface.TrialConfig``) of a search point and seed, resolved
        once for this study object (``trials.resolved``)."""
        return trials.resolved(self, params, seed)

    def configurations(self) -> list[dict[str, Any]]:
        """Grid points, each once: a point that resolves to the same trial config as an earlier
        one is left out (first occurrence kept), whether written twice across grids or inert
        where it lands (``{method: [baseline], eps: [1, 2]}``: baseline has no eps, so one
        baseline). [{}] without search. Optuna studies have no fixed list (their points come
        from the sampler). Computed once per study object."""
        return trials.grid_points(self)[0]

    def collapsed(self) -> int:
        """How many grid points ``configurations`` left out as the same trial as an earlier one."""
        return trials.grid_points(self)[1]

    def expand(self) -> list[PlannedTrial]:
        """Every (configuration, seed) trial of a grid study, in order; configurations x seeds."""
        return trials.expand(self)

    def planned_config_keys(self) -> set[str] | None:
        """The config_keys of the configurations this study file plans (a grid's points, or the one
        configuration of a study without search); None for an Optuna study, whose points come from
        its sampler. A stored trial outside them is not this study file's to redo."""
        return None if self.is_optuna else {config_key(p) for p in self.configurations()}

    @property
    def is_optuna(self) -> bool:
        return self.search is not None and self.search.optuna is not None
