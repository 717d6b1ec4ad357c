"""``Store``: the repository proper, the studies and their trials (fencing, short transactions).

Configs, parameters, specs and provenance records are kept as the JSON they were given, opaque
(as Optuna keeps parameters): reading them in today's trial vocabulary (upgrades, the trials
frame's config columns) is the job of ``vat_study.platform.results``, above the store. The other
jobs are parts sharing the store's engine: ``store.claims`` (drivers, heartbeats, claims:
``claims``), the frames of a study (``frames``), the Optuna records (``twin``), deleting and
renaming studies (``manage``).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..failpoints import failpoint
from .claims import Claims
from .database import Database, dialect_insert
from .faults import clean_text, retry_store_methods
from .schema import Base, FinalMetricRow, Lease, MetricRow, StudyRow, TrialRow, utcnow

log = logging.getLogger(__name__)


def _finite_or_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _numeric_rows(metrics: Mapping[str, Any], **fixed: Any) -> list[dict[str, Any]]:
    return [{**fixed, "name": str(k), "value": _finite_or_none(v)}
            for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


class Store(Database):
    """Every study and trial of the study database; its drivers and their claims in ``claims``.
    Cheap to pickle: the engine is made on first use, and the first use in a process brings the
    schema up to date."""

    def __init__(self, url: str, upgrade: bool = True) -> None:
        super().__init__(url, upgrade)
        self.claims = Claims(self)

    # ------------------------------------------------------------------ studies

    def get_or_create_study(self, name: str, spec: Mapping[str, Any], spec_path: str | None = None) -> int:
        stored = json.loads(json.dumps(spec, default=str))
        with self.write() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == name).with_for_update())
            if row is None:
                # several drivers may start one new study at once (PostgreSQL has no BEGIN IMMEDIATE):
                # one INSERT wins, the others' do nothing and they update the winner's row below
                now = utcnow()
                s.execute(dialect_insert(s)(StudyRow).values(name=name, spec=stored, spec_path=spec_path, created_at=now,
                                                      updated_at=now).on_conflict_do_nothing(index_elements=["name"]))
                row = s.scalar(select(StudyRow).where(StudyRow.name == name).with_for_update()
                               .execution_options(populate_existing=True))
            row.spec = stored
            row.spec_path = spec_path or row.spec_path
            row.updated_at = utcnow()
            return row.id

    def study_id(self, name: str) -> int | None:
        with self.session() as s:
            return s.scalar(select(StudyRow.id).where(StudyRow.name == name))

    def study_names(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(StudyRow.name).order_by(StudyRow.id)))

    def study_spec(self, name: str) -> dict[str, Any] | None:
        with self.session() as s:
            return s.scalar(select(StudyRow.spec).where(StudyRow.name == name))

    # ------------------------------------------------------------------ trials

    def trial_statuses(self, study_id: int) -> dict[str, str]:
        """key -> status for every trial the study has recorded."""
        with self.session() as s:
            return dict(s.execute(select(TrialRow.key, TrialRow.status).where(TrialRow.study_id == study_id)).all())

    def trial_states(self, study_id: int) -> dict[str, tuple[str, int, str | None]]:
        """key -> (status, attempts, driver token) for every trial the study has recorded."""
        with self.session() as s:
            return {k: (st, a, d) for k, st, a, d in s.execute(
                select(TrialRow.key, TrialRow.status, TrialRow.attempts, TrialRow.driver)
                .where(TrialRow.study_id == study_id)).all()}

    def stored_configs(self, study_id: int, status: str = "COMPLETE") -> dict[str, tuple[dict[str, Any], int, dict]]:
        """key -> (params, seed, config as stored) of the study's trials with ``status``
        (``results.trial_configs`` reads them in today's vocabulary)."""
        with self.session() as s:
            rows = s.execute(select(TrialRow.key, TrialRow.params, TrialRow.seed, TrialRow.config)
                             .where(TrialRow.study_id == study_id, TrialRow.status == status)).all()
        return {k: (p, seed, c) for k, p, seed, c in rows}

    def stored_config(self, trial_id: int) -> dict[str, Any] | None:
        """The config one trial ran with, as stored (``results.trial_config`` reads it in today's
        vocabulary); None for no such trial."""
        with self.session() as s:
            return s.scalar(select(TrialRow.config).where(TrialRow.id == int(trial_id)))

    def set_batch_group(self, leases: list[Lease], group: str) -> None:
        """The batch group of trials claimed one by one and trained as one batched model."""
        with self.write() as s:
            for lease in leases:
                row = self._holds(s, lease)
                if row is not None:
                    row.batch_group = group

    def _holds(self, s: Session, lease: Lease) -> TrialRow | None:
        """The trial row if ``lease`` is its current, RUNNING attempt (row-locked), else None."""
        row = s.scalar(select(TrialRow).where(TrialRow.id == lease.trial_id).with_for_update())
        if row is None or row.attempts != lease.attempt or row.status != "RUNNING":
            (log.info if getattr(row, "status", None) == "PRUNED" else log.warning)(
                "dropped a write for trial %s attempt %s: the trial has moved on (attempt %s, %s)",
                lease.trial_id, lease.attempt, getattr(row, "attempts", None), getattr(row, "status", None))
            return None
        return row

    def report(self, lease: Lease, step: int, metrics: Mapping[str, Any]) -> bool:
        """Per-step numeric metrics (NaN/inf stored as NULL); a re-report of (trial, step, name)
        overwrites (unique constraint + upsert). False (nothing written) for a stale lease."""
        rows = _numeric_rows(metrics, trial_id=lease.trial_id, step=int(step))
        if not rows:
            return True
        with self.write() as s:
            if self._holds(s, lease) is None:
                return False
            self._upsert(s, MetricRow, rows, ["trial_id", "step", "name"])
        failpoint("trial.report")
        return True

    @staticmethod
    def _upsert(s: Session, model: type[Base], rows: list[dict[str, Any]], keys: list[str]) -> None:
        stmt = dialect_insert(s)(model).values(rows)
        s.execute(stmt.on_conflict_do_update(index_elements=keys, set_={"value": stmt.excluded.value}))

    def finish_trial(self, lease: Lease, metrics: Mapping[str, Any], status: str = "COMPLETE") -> bool:
        """Final metrics and the status in one transaction. False (nothing written) for a stale lease."""
        with self.write() as s:
            row = self._holds(s, lease)
            if row is None:
                return False
            rows = _numeric_rows(metrics, trial_id=lease.trial_id)
            if rows:
                self._upsert(s, FinalMetricRow, rows, ["trial_id", "name"])
            row.status, row.finished_at, row.error, row.failure_kind = status, utcnow(), None, None
        return True

    def fail_trial(self, lease: Lease, error: str, kind: str = "error", status: str = "FAILED") -> bool:
        """Record a failure with its error text (the last 20,000 characters) and kind."""
        with self.write() as s:
            row = self._holds(s, lease)
            if row is None:
                return False
            row.status, row.finished_at, row.error, row.failure_kind = status, utcnow(), clean_text(error), kind
        return True

    def prune_trials(self, study_id: int, trials: list[Mapping[str, Any]]) -> int:
        """The trials (dicts of key, config_key, params, seed, config) become PRUNED: RUNNING ones
        at once (their driver's next write is refused, and its training stops), those not yet
        recorded as PRUNED rows, so no driver trains them. Returns how many changed."""
        n = 0
        with self.write() as s:
            now = utcnow()
            for t in trials:
                n += s.execute(update(TrialRow).where(TrialRow.study_id == study_id, TrialRow.key == t["key"],
                                                      TrialRow.status.in_(("RUNNING", "FAILED")))
                               .values(status="PRUNED", finished_at=now, error=None, failure_kind=None)
                               .execution_options(synchronize_session=False)).rowcount
                stmt = dialect_insert(s)(TrialRow).values(
                    study_id=study_id, key=t["key"], config_key=t["config_key"], params=dict(t["params"]),
                    seed=t["seed"], config=dict(t["config"]), status="PRUNED", attempts=0, started_at=now,
                    finished_at=now, host=socket.gethostname(), versions={})
                n += s.execute(stmt.on_conflict_do_nothing(index_elements=["study_id", "key"])).rowcount
        return n

    # ------------------------------------------------------------------ reading, and the trackers' notes

    def final_metric(self, study_id: int, key: str, name: str) -> float | None:
        """A final metric of a COMPLETE trial (None if the trial is not COMPLETE or lacks it)."""
        with self.session() as s:
            return s.scalar(select(FinalMetricRow.value).join(TrialRow, TrialRow.id == FinalMetricRow.trial_id)
                            .where(TrialRow.study_id == study_id, TrialRow.key == key,
                                   TrialRow.status == "COMPLETE", FinalMetricRow.name == name))

    def latest_versions(self, study: str) -> dict[str, str]:
        """The package versions recorded by the study's newest trial ({} if it has none)."""
        with self.session() as s:
            sid = s.scalar(select(StudyRow.id).where(StudyRow.name == study))
            if sid is None:
                return {}
            v = s.scalar(select(TrialRow.versions).where(TrialRow.study_id == sid).order_by(TrialRow.id.desc()).limit(1))
        return {k: x for k, x in (v or {}).items() if k != "trackers"}

    def note_trackers(self, lease: Lease, problems: Mapping[str, str]) -> None:
        """What the trial's trackers did not record (tracker -> one line), kept with the trial in
        ``versions["trackers"]`` (``tracking``); only for the attempt ``lease`` holds, finished or not."""
        with self.write() as s:
            row = s.scalar(select(TrialRow).where(TrialRow.id == lease.trial_id).with_for_update())
            if row is not None and row.attempts == lease.attempt:
                row.versions = {**(row.versions or {}), "trackers": dict(problems)}

    def tracker_problems(self, study: str) -> list[dict[str, Any]]:
        """{trial_id, seed, params, status, tracker, problem} for every tracker that did not record
        a trial of the study (``note_trackers``), in trial order."""
        with self.session() as s:
            rows = s.execute(select(TrialRow.id, TrialRow.seed, TrialRow.params, TrialRow.status, TrialRow.versions)
                             .join(StudyRow, StudyRow.id == TrialRow.study_id).where(StudyRow.name == study)
                             .order_by(TrialRow.id)).all()
        return [{"trial_id": r.id, "seed": r.seed, "params": dict(r.params or {}), "status": r.status,
                 "tracker": name, "problem": problem}
                for r in rows for name, problem in sorted(((r.versions or {}).get("trackers") or {}).items())]


retry_store_methods(Store)  # a lost connection (PostgreSQL restarted, a network blip) is retried: store.faults
