"""A study's results in today's trial vocabulary: the layer above the store.

The store keeps each trial's config as the JSON it was given, whatever version of vat-study wrote
it (``store.frames.stored_trials``). Here it is read as today's config (``upgrade_stored_config``:
the flat 0.1 vocabulary read nested, implementation settings moved to the method, defaults of
settings added since) and spread into the trials frame's columns, which the CLI, the executors,
the analyses and the report read. Per-step metrics, provenance and where the pruner stopped need
no vocabulary: they are read from ``store.frames`` directly.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..surface import Implementation, declared, get_path, methods, param_path, upgrade_stored_config
from .store import Store
from .store.frames import stored_trials


def config_columns() -> tuple[str, ...]:
    task = [p.removeprefix("task.") for p, on in declared("column").items() if on and p.startswith("task.")]
    impl = [f"implementation.{k}" for k in Implementation.model_fields]
    own = sorted(methods.setting_names() - {"name", "implementation"})
    return (*task, "method", *own, "model_path", *impl)


CONFIG_COLUMNS = config_columns()
"""Resolved config values copied into trials_frame columns (the analyses group by them), named as
search keys are (``config.param_path``: ``eps`` is ``method.eps``, ``method`` is ``method.name``):
the task settings whose field declares ``column: True``, every setting of every registered method
and of the implementation block (so a new one shows without editing a list here), and
``model_path``; None where the trial's method has no such setting (eps of baseline). Configs
stored by older versions are read upgraded (``config.upgrade_stored_config``). As the registry
stood at import; ``config_columns()`` is read again for every frame, so a method registered later
(``methods.register``) gets its columns too."""


def _columns(config: dict, columns: tuple[str, ...]) -> dict[str, Any]:
    config = upgrade_stored_config(config)
    return {k: get_path(config, param_path(k) or k) for k in columns}


def trials_frame(store: Store, study: str) -> pd.DataFrame:
    """One row per trial: the store's columns (``store.frames.TRIAL_COLUMNS``: trial_id, number,
    key, config_key, seed, status, error, failure_kind, attempts, optuna_number, batch_group, times,
    host, node, driver), the config columns (``CONFIG_COLUMNS``), one column per search parameter
    (``param.<name>``) and one per final metric (a config column wins over a final metric of its
    name). Empty for a study the store does not have."""
    stored = stored_trials(store, study)
    columns = config_columns()
    rows = []
    for t in stored.rows:
        row = {k: v for k, v in t.items() if k not in ("config", "params")}
        row.update(_columns(t["config"], columns))
        row.update({f"param.{k}": v for k, v in t["params"].items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if not stored.finals.empty and not df.empty:
        wide = stored.finals.pivot(index="trial_id", columns="name", values="value")
        wide = wide.drop(columns=[c for c in wide.columns if c in df.columns])  # config columns win
        df = df.merge(wide, left_on="trial_id", right_index=True, how="left")
    return df


def load_study_frame(url: str, study: str) -> pd.DataFrame:
    """The analyses' entry point: one row per trial with params, seed, status and final metrics."""
    return trials_frame(Store(url), study)


def trial_config(store: Store, trial_id: int) -> dict[str, Any] | None:
    """The fully resolved config one trial ran with, in today's vocabulary (None: no such trial)."""
    config = store.stored_config(trial_id)
    return None if config is None else upgrade_stored_config(config)


def trial_configs(store: Store, study_id: int, status: str = "COMPLETE") -> dict[str, tuple[dict[str, Any], int, dict]]:
    """key -> (params, seed, resolved config) of the study's trials with ``status``; configs in
    today's vocabulary, whatever version stored them."""
    return {k: (p, seed, upgrade_stored_config(c)) for k, (p, seed, c) in store.stored_configs(study_id, status).items()}
