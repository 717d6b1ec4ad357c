"""A study as the store keeps it, for the layer above (``vat_study.platform.results``) and the
analyses: its trials with their configs and parameters as the JSON stored (``stored_trials``),
per-step metrics, provenance records, where the pruner stopped trials. Nothing here reads a
config: the trials frame's config columns are computed above the store. A lost connection is
retried, as every store call is (``store.faults``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import select

from .database import Database
from .faults import retry_transient
from .schema import FinalMetricRow, MetricRow, StudyRow, TrialRow

TRIAL_COLUMNS = ("trial_id", "number", "key", "config_key", "seed", "status", "error", "failure_kind", "attempts",
                 "optuna_number", "batch_group", "started_at", "finished_at", "host", "node", "driver")
"""The store's own columns of a trial, in the trials frame's order: ``number`` is 1, 2, ... within
the study, in the order recorded (what progress lines, ``status`` and the report call "trial N");
``node`` the Ray node that ran it; ``driver`` the token of the driver that claimed it."""


@dataclass
class StoredTrials:
    """A study's trials, read in one transaction. ``rows``: one per trial in the order recorded,
    ``TRIAL_COLUMNS`` and ``config`` and ``params`` (the JSON stored, opaque); ``finals``: long
    (trial_id, name, value)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    finals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["trial_id", "name", "value"]))


@retry_transient
def stored_trials(db: Database, study: str) -> StoredTrials:
    """The study's trials and final metrics as stored (none for a study the store does not have)."""
    with db.session() as s:
        sid = s.scalar(select(StudyRow.id).where(StudyRow.name == study))
        if sid is None:
            return StoredTrials()
        trials = list(s.scalars(select(TrialRow).where(TrialRow.study_id == sid).order_by(TrialRow.id)))
        finals = s.execute(select(FinalMetricRow.trial_id, FinalMetricRow.name, FinalMetricRow.value)
                           .join(TrialRow, TrialRow.id == FinalMetricRow.trial_id)
                           .where(TrialRow.study_id == sid)).all()
    rows = [{"trial_id": t.id, "number": number, **{c: getattr(t, c) for c in TRIAL_COLUMNS[2:]},
             "config": t.config, "params": t.params} for number, t in enumerate(trials, 1)]
    return StoredTrials(rows, pd.DataFrame(finals, columns=["trial_id", "name", "value"]))


@retry_transient
def metrics_frame(db: Database, study: str) -> pd.DataFrame:
    """Long format: trial_id, step, name, value for every per-step metric of the study."""
    with db.session() as s:
        rows = s.execute(select(MetricRow.trial_id, MetricRow.step, MetricRow.name, MetricRow.value)
                         .join(TrialRow, TrialRow.id == MetricRow.trial_id)
                         .join(StudyRow, StudyRow.id == TrialRow.study_id)
                         .where(StudyRow.name == study)
                         .order_by(MetricRow.trial_id, MetricRow.step, MetricRow.name)).all()
    return pd.DataFrame(rows, columns=["trial_id", "step", "name", "value"])


@retry_transient
def provenance_frame(db: Database, study: str) -> pd.DataFrame:
    """One row per trial: trial_id and its provenance record (``versions``: vat-study version, git
    commit and dirty flag, argv and overrides, CPU, GPU, CUDA, torch threads, library versions)
    as ``provenance.<key>`` columns; a list or mapping as its JSON."""
    with db.session() as s:
        rows = s.execute(select(TrialRow.id, TrialRow.versions).join(StudyRow, StudyRow.id == TrialRow.study_id)
                         .where(StudyRow.name == study).order_by(TrialRow.id)).all()
    out = [{"trial_id": tid, **{f"provenance.{k}": v if v is None or isinstance(v, (str, int, float, bool))
                                else json.dumps(v, default=str) for k, v in (versions or {}).items()}}
           for tid, versions in rows]
    return pd.DataFrame(out, columns=None if out else ["trial_id"])


@retry_transient
def pruned_at(db: Database, study: str, metric: str) -> dict[int, tuple[int, float | None]]:
    """trial_id -> (the last step, and ``metric`` at it) of each PRUNED trial of ``study`` that
    reported an evaluation: where the pruner stopped it. A PRUNED trial absent here never
    started (its configuration was pruned on the evaluations of its other seeds)."""
    with db.session() as s:
        rows = s.execute(select(MetricRow.trial_id, MetricRow.step, MetricRow.value)
                         .join(TrialRow, TrialRow.id == MetricRow.trial_id)
                         .join(StudyRow, StudyRow.id == TrialRow.study_id)
                         .where(StudyRow.name == study, TrialRow.status == "PRUNED", MetricRow.name == metric)).all()
    out: dict[int, tuple[int, float | None]] = {}
    for tid, step, value in rows:
        if tid not in out or step > out[tid][0]:
            out[int(tid)] = (int(step), value)
    return out
