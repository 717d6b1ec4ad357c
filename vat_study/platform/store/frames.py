"""pandas frames of a study for the analyses: trials (with config columns) and per-step metrics."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select

from ...surface import Implementation, declared, get_path, methods, param_path, upgrade_stored_config
from .repository import Store
from .schema import FinalMetricRow, MetricRow, StudyRow, TrialRow

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
    """One row per trial: id, number (1, 2, ... within the study, in the order recorded: what
    progress lines, ``status`` and the report call "trial N"), key, config_key, seed, status, error, failure_kind, times, host,
    node (the Ray node that ran it), driver (the token of the driver that claimed it), attempts, batch_group, one column per search parameter (``param.<name>``) and per final metric."""
    with store.session() as s:
        sid = s.scalar(select(StudyRow.id).where(StudyRow.name == study))
        if sid is None:
            return pd.DataFrame()
        trials = list(s.scalars(select(TrialRow).where(TrialRow.study_id == sid).order_by(TrialRow.id)))
        finals = s.execute(select(FinalMetricRow.trial_id, FinalMetricRow.name, FinalMetricRow.value)
                           .join(TrialRow, TrialRow.id == FinalMetricRow.trial_id)
                           .where(TrialRow.study_id == sid)).all()
    rows = []
    columns = config_columns()
    for number, t in enumerate(trials, 1):
        row = dict(trial_id=t.id, number=number, key=t.key, config_key=t.config_key, seed=t.seed, status=t.status,
                   error=t.error, failure_kind=t.failure_kind, attempts=t.attempts,
                   optuna_number=t.optuna_number, batch_group=t.batch_group,
                   started_at=t.started_at, finished_at=t.finished_at, host=t.host, node=t.node,
                   driver=t.driver, **_columns(t.config, columns))
        row.update({f"param.{k}": v for k, v in t.params.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if finals and not df.empty:
        wide = pd.DataFrame(finals, columns=["trial_id", "name", "value"]).pivot(
            index="trial_id", columns="name", values="value")
        wide = wide.drop(columns=[c for c in wide.columns if c in df.columns])  # config columns win
        df = df.merge(wide, left_on="trial_id", right_index=True, how="left")
    return df

def metrics_frame(store: Store, study: str) -> pd.DataFrame:
    """Long format: trial_id, step, name, value for every per-step metric of the study."""
    with store.session() as s:
        rows = s.execute(select(MetricRow.trial_id, MetricRow.step, MetricRow.name, MetricRow.value)
                         .join(TrialRow, TrialRow.id == MetricRow.trial_id)
                         .join(StudyRow, StudyRow.id == TrialRow.study_id)
                         .where(StudyRow.name == study)
                         .order_by(MetricRow.trial_id, MetricRow.step, MetricRow.name)).all()
    return pd.DataFrame(rows, columns=["trial_id", "step", "name", "value"])


def provenance_frame(store: Store, study: str) -> pd.DataFrame:
    """One row per trial: trial_id and its provenance record (``versions``: vat-study version, git
    commit and dirty flag, argv and overrides, CPU, GPU, CUDA, torch threads, library versions)
    as ``provenance.<key>`` columns; a list or mapping as its JSON."""
    import json

    with store.session() as s:
        rows = s.execute(select(TrialRow.id, TrialRow.versions).join(StudyRow, StudyRow.id == TrialRow.study_id)
                         .where(StudyRow.name == study).order_by(TrialRow.id)).all()
    out = [{"trial_id": tid, **{f"provenance.{k}": v if v is None or isinstance(v, (str, int, float, bool))
                                else json.dumps(v, default=str) for k, v in (versions or {}).items()}}
           for tid, versions in rows]
    return pd.DataFrame(out, columns=None if out else ["trial_id"])


def pruned_at(store: Store, study: str, metric: str) -> dict[int, tuple[int, float | None]]:
    """trial_id -> (the last step, and ``metric`` at it) of each PRUNED trial of ``study`` that
    reported an evaluation: where the pruner stopped it. A PRUNED trial absent here never
    started (its configuration was pruned on the evaluations of its other seeds)."""
    with store.session() as s:
        rows = s.execute(select(MetricRow.trial_id, MetricRow.step, MetricRow.value)
                         .join(TrialRow, TrialRow.id == MetricRow.trial_id)
                         .join(StudyRow, StudyRow.id == TrialRow.study_id)
                         .where(StudyRow.name == study, TrialRow.status == "PRUNED", MetricRow.name == metric)).all()
    out: dict[int, tuple[int, float | None]] = {}
    for tid, step, value in rows:
        if tid not in out or step > out[tid][0]:
            out[int(tid)] = (int(step), value)
    return out


def load_study_frame(url: str, study: str) -> pd.DataFrame:
    """The analyses' entry point: one row per trial with params, seed, status and final metrics."""
    return Store(url).trials_frame(study)
