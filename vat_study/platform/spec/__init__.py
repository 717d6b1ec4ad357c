"""Study files: schema (``schema``, ``space``), reading and ``--set`` overrides (``loading``), the
checks against the science (``checks``), the trials a study plans (``trials``). Import from here.

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

from ...common.yamlio import canonical, digest, set_dotted
from ...surface import ConfigError
from ..store.urls import DEFAULT_STORAGE, STORAGE_ENV, default_storage
from .errors import MAX_PROBLEMS, SpecError
from .schema import (Executor, Metric, Paper, PaperOrdering, PaperValue, PerTrial, Sequential, StudySpec,
                     check_study_name)
from .space import PRUNERS, Distribution, OptunaSearch, Search
from .trials import MODEL_FILE, PlannedTrial, config_key
from .checks import search_points, validate_trials
from .loading import SHAPES, load_spec, parse_set, parse_spec

__all__ = ["StudySpec", "PlannedTrial", "SpecError", "ConfigError", "load_spec", "parse_spec", "parse_set",
           "DEFAULT_STORAGE", "STORAGE_ENV", "default_storage", "Executor", "Metric", "Paper", "PaperOrdering",
           "PaperValue", "PerTrial", "Sequential", "Distribution", "OptunaSearch", "Search", "PRUNERS",
           "MODEL_FILE", "MAX_PROBLEMS", "SHAPES", "canonical", "check_study_name", "config_key", "digest",
           "search_points", "set_dotted", "validate_trials"]
