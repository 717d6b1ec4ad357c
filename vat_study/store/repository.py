"""``Store``: every read and write of the study database (fencing, short transactions)."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pandas as pd
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..surface import upgrade_stored_config
from ..failpoints import failpoint
from .engine import make_engine, upgrade_schema
from .faults import clean_text, retry_store_methods
from .schema import (
    Base,
    FinalMetricRow,
    Lease,
    MetricRow,
    StudyRow,
    TrialRow,
    utcnow,
)

log = logging.getLogger(__name__)


def package_versions() -> dict[str, Any]:
    """What a trial records in ``versions``: its provenance (``vat_study.provenance``)."""
    from ..provenance import trial_provenance

    return trial_provenance()


def _finite_or_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _numeric_rows(metrics: Mapping[str, Any], **fixed: Any) -> list[dict[str, Any]]:
    return [{**fixed, "name": str(k), "value": _finite_or_none(v)}
            for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


class Store:
    """All reads and writes of the study database. Cheap to pickle: the engine is made on first
    use, and the first use in a process brings the schema up to date."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])  # type: ignore[misc]

    @property
    def engine(self) -> Engine:
        if self._engine is None or self._pid != os.getpid():
            engine = make_engine(self.url)
            try:
                upgrade_schema(engine)  # one cheap read when the schema is current
            except BaseException:
                engine.dispose()
                raise
            self._engine, self._pid = engine, os.getpid()
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def session(self) -> Session:
        """A session for reading."""
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction (BEGIN IMMEDIATE on SQLite), committed at the end of the block."""
        with Session(self.engine.execution_options(vat_write=True), expire_on_commit=False) as s, s.begin():
            yield s
            failpoint("store.commit")

    # ------------------------------------------------------------------ studies

    def get_or_create_study(self, name: str, spec: Mapping[str, Any], spec_path: str | None = None) -> int:
        with self._write() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == name))
            if row is None:
                row = StudyRow(name=name, spec=json.loads(json.dumps(spec, default=str)), spec_path=spec_path)
                s.add(row)
                s.flush()
            else:
                row.spec = json.loads(json.dumps(spec, default=str))
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

    def trial_configs(self, study_id: int, status: str = "COMPLETE") -> dict[str, tuple[dict[str, Any], int, dict]]:
        """key -> (params, seed, resolved config) of the study's trials with ``status``; configs
        in today's vocabulary (``config.upgrade_stored_config``), whatever version stored them."""
        with self.session() as s:
            rows = s.execute(select(TrialRow.key, TrialRow.params, TrialRow.seed, TrialRow.config)
                             .where(TrialRow.study_id == study_id, TrialRow.status == status)).all()
        return {k: (p, seed, upgrade_stored_config(c)) for k, p, seed, c in rows}

    def fail_running(self, study_id: int, error: str, kind: str, keys: list[str] | None = None) -> int:
        """RUNNING trials of the study (or those of ``keys``) become FAILED. Returns how many."""
        error = clean_text(error)
        with self._write() as s:
            q = select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.status == "RUNNING")
            if keys is not None:
                q = q.where(TrialRow.key.in_(keys))
            rows = list(s.scalars(q.with_for_update()))
            for r in rows:
                r.status, r.error, r.failure_kind, r.finished_at = "FAILED", error, kind, utcnow()
            return len(rows)

    def fail_interrupted(self, study_id: int) -> int:
        """Trials left RUNNING by a killed run become FAILED (to be redone). Returns how many."""
        return self.fail_running(study_id, "interrupted: the run stopped before this trial finished", "interrupted")

    def start_trial(self, study_id: int, *, key: str, config_key: str, params: Mapping[str, Any], seed: int,
                    config: Mapping[str, Any], optuna_number: int | None = None,
                    batch_group: str | None = None, node: str | None = None) -> Lease:
        """Mark a trial RUNNING (a new row, or a new attempt of a FAILED/RUNNING one: its old metrics
        are dropped, and writes through the old attempt's lease are refused from now on)."""
        with self._write() as s:
            row = s.scalar(select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.key == key)
                           .with_for_update())
            common = dict(status="RUNNING", error=None, failure_kind=None, started_at=utcnow(), finished_at=None,
                          host=socket.gethostname(), versions=package_versions(), config=dict(config),
                          optuna_number=optuna_number, batch_group=batch_group, node=node)
            if row is None:
                row = TrialRow(study_id=study_id, key=key, config_key=config_key, params=dict(params), seed=seed,
                               attempts=1, **common)
                s.add(row)
                s.flush()
            else:
                if row.status == "COMPLETE":
                    raise RuntimeError(f"trial {key} is already COMPLETE; it is never run twice")
                for k, v in common.items():
                    setattr(row, k, v)
                row.attempts += 1
                s.execute(delete(MetricRow).where(MetricRow.trial_id == row.id))
                s.execute(delete(FinalMetricRow).where(FinalMetricRow.trial_id == row.id))
                s.flush()
            return Lease(row.id, row.attempts)

    def _holds(self, s: Session, lease: Lease) -> TrialRow | None:
        """The trial row if ``lease`` is its current, RUNNING attempt (row-locked), else None."""
        row = s.scalar(select(TrialRow).where(TrialRow.id == lease.trial_id).with_for_update())
        if row is None or row.attempts != lease.attempt or row.status != "RUNNING":
            log.warning("dropped a write for trial %s attempt %s: the trial has moved on (attempt %s, %s)",
                        lease.trial_id, lease.attempt, getattr(row, "attempts", None), getattr(row, "status", None))
            return None
        return row

    def report(self, lease: Lease, step: int, metrics: Mapping[str, Any]) -> bool:
        """Per-step numeric metrics (NaN/inf stored as NULL); a re-report of (trial, step, name)
        overwrites (unique constraint + upsert). False (nothing written) for a stale lease."""
        rows = _numeric_rows(metrics, trial_id=lease.trial_id, step=int(step))
        if not rows:
            return True
        with self._write() as s:
            if self._holds(s, lease) is None:
                return False
            self._upsert(s, MetricRow, rows, ["trial_id", "step", "name"])
        failpoint("trial.report")
        return True

    @staticmethod
    def _upsert(s: Session, model: type[Base], rows: list[dict[str, Any]], keys: list[str]) -> None:
        dialect = s.get_bind().dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(model).values(rows)
        s.execute(stmt.on_conflict_do_update(index_elements=keys, set_={"value": stmt.excluded.value}))

    def finish_trial(self, lease: Lease, metrics: Mapping[str, Any], status: str = "COMPLETE") -> bool:
        """Final metrics and the status in one transaction. False (nothing written) for a stale lease."""
        with self._write() as s:
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
        with self._write() as s:
            row = self._holds(s, lease)
            if row is None:
                return False
            row.status, row.finished_at, row.error, row.failure_kind = status, utcnow(), clean_text(error), kind
        return True

    # ------------------------------------------------------------------ reading

    def final_metric(self, study_id: int, key: str, name: str) -> float | None:
        """A final metric of a COMPLETE trial (None if the trial is not COMPLETE or lacks it)."""
        with self.session() as s:
            return s.scalar(select(FinalMetricRow.value).join(TrialRow, TrialRow.id == FinalMetricRow.trial_id)
                            .where(TrialRow.study_id == study_id, TrialRow.key == key,
                                   TrialRow.status == "COMPLETE", FinalMetricRow.name == name))

    def trial_config(self, trial_id: int) -> dict[str, Any] | None:
        """The fully resolved config one trial ran with, in today's vocabulary."""
        with self.session() as s:
            config = s.scalar(select(TrialRow.config).where(TrialRow.id == int(trial_id)))
        return None if config is None else upgrade_stored_config(config)

    def latest_versions(self, study: str) -> dict[str, str]:
        """The package versions recorded by the study's newest trial ({} if it has none)."""
        with self.session() as s:
            sid = s.scalar(select(StudyRow.id).where(StudyRow.name == study))
            if sid is None:
                return {}
            v = s.scalar(select(TrialRow.versions).where(TrialRow.study_id == sid).order_by(TrialRow.id.desc()).limit(1))
        return dict(v or {})

    def trials_frame(self, study: str) -> pd.DataFrame:
        """One row per trial (``frames.trials_frame``)."""
        from .frames import trials_frame

        return trials_frame(self, study)

    def metrics_frame(self, study: str) -> pd.DataFrame:
        """Per-step metrics, long format (``frames.metrics_frame``)."""
        from .frames import metrics_frame

        return metrics_frame(self, study)


retry_store_methods(Store)  # a lost connection (PostgreSQL restarted, a network blip) is retried: store.faults
