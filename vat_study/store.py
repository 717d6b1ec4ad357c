"""The SQL store: studies, trials, per-step metrics and final metrics (SQLAlchemy 2.0 typed ORM).

SQLite (WAL mode) by default; PostgreSQL (``postgresql+psycopg://...``) for shared use. Tables
are prefixed ``vat_`` so the Optuna study can live in the same database (optuna-dashboard opens
it). Every write goes through ``Store``; re-reporting a (trial, step, name) overwrites the value
instead of duplicating it. Engines are created lazily, so a ``Store`` pickles (Ray callbacks,
Ray workers) and each process opens its own connection pool.
"""

from __future__ import annotations

import json
import os
import platform
import socket
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

STATUSES = ("RUNNING", "COMPLETE", "FAILED", "PRUNED")
CONFIG_COLUMNS = ("dataset", "mode", "n_labeled", "model", "method", "eps", "alpha", "power_iterations", "xi",
                  "direction", "steps", "noise_sigma", "model_path")
"""Resolved config values copied into trials_frame columns (the analyses group by them)."""

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class StudyRow(Base):
    __tablename__ = "vat_studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    trials: Mapped[list[TrialRow]] = relationship(back_populates="study", cascade="all, delete-orphan")


class TrialRow(Base):
    __tablename__ = "vat_trials"
    __table_args__ = (UniqueConstraint("study_id", "key", name="uq_vat_trials_study_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("vat_studies.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    optuna_number: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    host: Mapped[str] = mapped_column(String(255))
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    study: Mapped[StudyRow] = relationship(back_populates="trials")


class MetricRow(Base):
    __tablename__ = "vat_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "step", "name", name="uq_vat_metrics_trial_step_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("vat_trials.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float)


class FinalMetricRow(Base):
    __tablename__ = "vat_final_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "name", name="uq_vat_final_metrics_trial_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("vat_trials.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float)


def safe_url(url: str) -> str:
    """The URL with any password replaced by ***, for printing and for storing in results."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  not a URL: nothing to hide
        return url


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("vat-study", "torch", "numpy", "ray", "optuna", "sqlalchemy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _finite_or_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


class Store:
    """All reads and writes of the study database. Cheap to pickle: the engine is made on first use."""

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
            url = make_url(self.url)
            kwargs: dict[str, Any] = {}
            if url.get_backend_name() == "sqlite":
                if url.database and url.database != ":memory:":
                    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"timeout": 60}
            else:
                kwargs["pool_pre_ping"] = True
            engine = create_engine(url, **kwargs)
            if url.get_backend_name() == "sqlite":
                @event.listens_for(engine, "connect")
                def _pragmas(dbapi_conn, _record):  # WAL: readers never block the writer
                    cur = dbapi_conn.cursor()
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=NORMAL")
                    cur.execute("PRAGMA foreign_keys=ON")
                    cur.close()
            Base.metadata.create_all(engine)
            self._engine, self._pid = engine, os.getpid()
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # ------------------------------------------------------------------ studies

    def get_or_create_study(self, name: str, spec: Mapping[str, Any], spec_path: str | None = None) -> int:
        with self.session() as s, s.begin():
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

    def fail_interrupted(self, study_id: int) -> int:
        """Trials left RUNNING by a killed run become FAILED (to be redone). Returns how many."""
        with self.session() as s, s.begin():
            rows = list(s.scalars(select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.status == "RUNNING")))
            for r in rows:
                r.status, r.error, r.finished_at = "FAILED", "interrupted: the run stopped before this trial finished", utcnow()
            return len(rows)

    def start_trial(self, study_id: int, *, key: str, config_key: str, params: Mapping[str, Any], seed: int,
                    config: Mapping[str, Any], optuna_number: int | None = None) -> int:
        """Mark a trial RUNNING (a new row, or a retry of a FAILED one; its old metrics are dropped)."""
        with self.session() as s, s.begin():
            row = s.scalar(select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.key == key))
            common = dict(status="RUNNING", error=None, started_at=utcnow(), finished_at=None,
                          host=socket.gethostname(), versions=package_versions(), config=dict(config),
                          optuna_number=optuna_number)
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
                s.query(MetricRow).filter(MetricRow.trial_id == row.id).delete()
                s.query(FinalMetricRow).filter(FinalMetricRow.trial_id == row.id).delete()
            return row.id

    def report(self, trial_id: int, step: int, metrics: Mapping[str, Any]) -> None:
        """Per-step numeric metrics (NaN/inf stored as NULL); a re-report of (trial, step, name)
        overwrites (unique constraint + upsert)."""
        rows = [{"trial_id": trial_id, "step": int(step), "name": str(k), "value": _finite_or_none(v)}
                for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not rows:
            return
        self._upsert(MetricRow, rows, ["trial_id", "step", "name"])

    def _upsert(self, model: type[Base], rows: list[dict[str, Any]], keys: list[str]) -> None:
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # pragma: no cover
            raise RuntimeError(f"unsupported database {dialect!r}: use sqlite or postgresql")
        stmt = insert(model).values(rows)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={"value": stmt.excluded.value})
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def finish_trial(self, trial_id: int, metrics: Mapping[str, Any], status: str = "COMPLETE") -> None:
        rows = [{"trial_id": trial_id, "name": str(k), "value": _finite_or_none(v)}
                for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if rows:
            self._upsert(FinalMetricRow, rows, ["trial_id", "name"])
        with self.session() as s, s.begin():
            row = s.get(TrialRow, trial_id)
            row.status, row.finished_at, row.error = status, utcnow(), None

    def fail_trial(self, trial_id: int, error: str, status: str = "FAILED") -> None:
        with self.session() as s, s.begin():
            row = s.get(TrialRow, trial_id)
            row.status, row.finished_at, row.error = status, utcnow(), error[-20000:]

    # ------------------------------------------------------------------ reading

    def final_metric(self, study_id: int, key: str, name: str) -> float | None:
        """A final metric of a COMPLETE trial (None if the trial is not COMPLETE or lacks it)."""
        with self.session() as s:
            return s.scalar(select(FinalMetricRow.value).join(TrialRow, TrialRow.id == FinalMetricRow.trial_id)
                            .where(TrialRow.study_id == study_id, TrialRow.key == key,
                                   TrialRow.status == "COMPLETE", FinalMetricRow.name == name))

    def trials_frame(self, study: str) -> pd.DataFrame:
        """One row per trial: id, key, config_key, seed, status, error, times, host, attempts,
        one column per search parameter (``param.<name>``) and per final metric."""
        with self.session() as s:
            sid = s.scalar(select(StudyRow.id).where(StudyRow.name == study))
            if sid is None:
                return pd.DataFrame()
            trials = list(s.scalars(select(TrialRow).where(TrialRow.study_id == sid).order_by(TrialRow.id)))
            finals = s.execute(select(FinalMetricRow.trial_id, FinalMetricRow.name, FinalMetricRow.value)
                               .join(TrialRow, TrialRow.id == FinalMetricRow.trial_id)
                               .where(TrialRow.study_id == sid)).all()
        rows = []
        for t in trials:
            row = dict(trial_id=t.id, key=t.key, config_key=t.config_key, seed=t.seed, status=t.status,
                       error=t.error, attempts=t.attempts, optuna_number=t.optuna_number,
                       started_at=t.started_at, finished_at=t.finished_at, host=t.host,
                       **{k: t.config.get(k) for k in CONFIG_COLUMNS})
            row.update({f"param.{k}": v for k, v in t.params.items()})
            rows.append(row)
        df = pd.DataFrame(rows)
        if finals and not df.empty:
            wide = pd.DataFrame(finals, columns=["trial_id", "name", "value"]).pivot(
                index="trial_id", columns="name", values="value")
            wide = wide.drop(columns=[c for c in wide.columns if c in df.columns])  # config columns win
            df = df.merge(wide, left_on="trial_id", right_index=True, how="left")
        return df

    def metrics_frame(self, study: str) -> pd.DataFrame:
        """Long format: trial_id, step, name, value for every per-step metric of the study."""
        with self.session() as s:
            rows = s.execute(select(MetricRow.trial_id, MetricRow.step, MetricRow.name, MetricRow.value)
                             .join(TrialRow, TrialRow.id == MetricRow.trial_id)
                             .join(StudyRow, StudyRow.id == TrialRow.study_id)
                             .where(StudyRow.name == study)
                             .order_by(MetricRow.trial_id, MetricRow.step, MetricRow.name)).all()
        return pd.DataFrame(rows, columns=["trial_id", "step", "name", "value"])


def load_study_frame(url: str, study: str) -> pd.DataFrame:
    """The analyses' entry point: one row per trial with params, seed, status and final metrics."""
    return Store(url).trials_frame(study)
