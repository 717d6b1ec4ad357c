"""The SQL store: studies, trials, per-step metrics and final metrics (SQLAlchemy 2.0 typed ORM).

SQLite (WAL mode) by default; PostgreSQL (``postgresql+psycopg://...``) for shared use. Tables
are prefixed ``vat_`` so the Optuna study can live in the same database (optuna-dashboard opens
it). Every write goes through ``Store``; re-reporting a (trial, step, name) overwrites the value
instead of duplicating it. Engines are created lazily, so a ``Store`` pickles (Ray callbacks,
Ray workers) and each process opens its own connection pool.

Reliability (what the tests in tests/test_reliability.py inject faults against):

* Schema versions. The schema is created and upgraded by Alembic migrations
  (``vat_study/migrations``, version table ``vat_alembic_version``, apart from Optuna's own
  ``alembic_version``). The first use of a database in a process upgrades it to the newest
  revision under a lock (a PostgreSQL advisory lock; SQLite's write lock), so an older store is
  upgraded in place, data kept; a store written by a newer vat-study is refused (``StoreError``).
* Writes are short transactions. On SQLite every write transaction starts with
  ``BEGIN IMMEDIATE``: it takes the write lock up front and waits for it (busy timeout 60 s)
  instead of failing with "database is locked" when two writers race to upgrade a read lock.
* Fencing. ``start_trial`` returns a ``Lease`` (trial id, attempt number). Reports, finishing and
  failing go through the lease and are dropped if the trial was restarted since (a newer attempt)
  or is no longer RUNNING: a zombie worker of a killed run can never overwrite the rerun's trial.
  ``finish_trial`` writes the final metrics and COMPLETE in one transaction: a kill leaves either
  a finished trial or a RUNNING one (redone by the next run), never a half-finished one.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from .config import upgrade_stored_config
from .failpoints import failpoint

log = logging.getLogger(__name__)

STATUSES = ("RUNNING", "COMPLETE", "FAILED", "PRUNED")
FAILURE_KINDS = ("error", "diverged", "timeout", "interrupted", "worker_died")
"""Why a trial is FAILED: it raised; its loss became NaN/inf; it ran past executor.trial_timeout;
the run stopped (Ctrl-C, kill) before it finished; its Ray worker process died."""
CONFIG_COLUMNS = ("dataset", "mode", "n_labeled", "model", "method", "eps", "alpha", "power_iterations", "xi",
                  "direction", "steps", "noise_sigma", "model_path",
                  "implementation.clean_stochastic", "implementation.power_iteration_stochastic",
                  "implementation.lds_stochastic", "implementation.divergence", "implementation.bn",
                  "implementation.regularizer_batch")
"""Resolved config values copied into trials_frame columns (the analyses group by them); a dotted
name is a nested key. Configs stored by older versions are read upgraded (config.upgrade_stored_config)."""


def _dotted(config: dict, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(config, dict):
            return None
        config = config.get(part)
    return config

SCHEMA_REVISION = "0002"
"""The newest migration (vat_study/migrations/versions); a fresh store is created at it."""
VERSION_TABLE = "vat_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class StoreError(RuntimeError):
    """The database cannot be used as asked (unreachable path, newer schema, failed upgrade)."""


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
    __table_args__ = (
        UniqueConstraint("study_id", "key", name="uq_vat_trials_study_key"),
        CheckConstraint("status IN ('RUNNING', 'COMPLETE', 'FAILED', 'PRUNED')", name="status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("vat_studies.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    failure_kind: Mapped[str | None] = mapped_column(String(32))  # FAILURE_KINDS (schema 0002)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    optuna_number: Mapped[int | None] = mapped_column(Integer)
    batch_group: Mapped[str | None] = mapped_column(String(64), index=True)  # seeds trained as one model (0002)
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


class Lease(NamedTuple):
    """The right to write one attempt of one trial (see "Fencing" in the module docstring)."""

    trial_id: int
    attempt: int


def safe_url(url: str) -> str:
    """The URL with any password replaced by ***, for printing and for storing in results."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  not a URL: nothing to hide
        return url


def mask_secrets(message: str, url: str) -> str:
    """``message`` with the password of ``url`` (if any) replaced by ***."""
    try:
        password = make_url(url).password
    except Exception:  # noqa: BLE001
        return message
    return message.replace(str(password), "***") if password else message


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


def _numeric_rows(metrics: Mapping[str, Any], **fixed: Any) -> list[dict[str, Any]]:
    return [{**fixed, "name": str(k), "value": _finite_or_none(v)}
            for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


# ---------------------------------------------------------------------------------- engines


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite: WAL, foreign keys on, a 60 s busy timeout, and explicit
    BEGIN (``BEGIN IMMEDIATE`` on connections with the ``vat_write`` execution option)."""
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"not a database URL ({e})") from None
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            try:
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder of {u.database!r} ({e.strerror})") from None
        engine = create_engine(u, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # the driver never opens transactions itself: we do
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("vat_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if u.get_backend_name() != "postgresql":
        raise StoreError(f"unsupported database {u.get_backend_name()!r}: use sqlite or postgresql")
    return create_engine(u, pool_pre_ping=True)


def _alembic_config(conn: Connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def schema_revision(conn: Connection) -> str | None:
    """The store's schema revision; "0001" for a store made before versions were recorded
    (its tables exist but no version table); None for an empty database."""
    names = set(inspect(conn).get_table_names())
    if VERSION_TABLE in names:
        rev = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        if rev is not None:
            return rev
    return "0001" if "vat_trials" in names else None


def _known_revisions() -> list[str]:
    return sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def upgrade_schema(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to ``SCHEMA_REVISION``; returns (revision before, after). Safe to call
    from many processes at once: the upgrade runs under the database's write/advisory lock and
    re-reads the revision inside it."""
    from alembic import command

    with engine.connect() as conn:
        before = schema_revision(conn)
        conn.rollback()
    if before == SCHEMA_REVISION:
        return before, before
    if before is not None and before not in _known_revisions():
        raise StoreError(f"the store's schema is at revision {before!r}, written by a newer vat-study (this one "
                         f"knows up to {SCHEMA_REVISION!r}); upgrade vat-study to use it")
    write = engine.execution_options(vat_write=True)
    with write.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # must be set outside a transaction; a batch table rebuild would cascade deletes
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if not sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(7241851)"))  # one upgrader at a time
                current = schema_revision(conn)
                if current != SCHEMA_REVISION:
                    cfg = _alembic_config(conn)
                    if current == "0001" and VERSION_TABLE not in inspect(conn).get_table_names():
                        command.stamp(cfg, "0001")  # a store from before versions were recorded
                    command.upgrade(cfg, "head")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
    if before is not None:
        log.warning("upgraded the store schema from revision %s to %s", before, SCHEMA_REVISION)
    return before, SCHEMA_REVISION


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
        """key -> (params, seed, resolved config) of the study's trials with ``status``."""
        with self.session() as s:
            rows = s.execute(select(TrialRow.key, TrialRow.params, TrialRow.seed, TrialRow.config)
                             .where(TrialRow.study_id == study_id, TrialRow.status == status)).all()
        return {k: (p, seed, c) for k, p, seed, c in rows}

    def fail_running(self, study_id: int, error: str, kind: str, keys: list[str] | None = None) -> int:
        """RUNNING trials of the study (or those of ``keys``) become FAILED. Returns how many."""
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
                    batch_group: str | None = None) -> Lease:
        """Mark a trial RUNNING (a new row, or a new attempt of a FAILED/RUNNING one: its old metrics
        are dropped, and writes through the old attempt's lease are refused from now on)."""
        with self._write() as s:
            row = s.scalar(select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.key == key)
                           .with_for_update())
            common = dict(status="RUNNING", error=None, failure_kind=None, started_at=utcnow(), finished_at=None,
                          host=socket.gethostname(), versions=package_versions(), config=dict(config),
                          optuna_number=optuna_number, batch_group=batch_group)
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
            row.status, row.finished_at, row.error, row.failure_kind = status, utcnow(), error[-20000:], kind
        return True

    # ------------------------------------------------------------------ reading

    def final_metric(self, study_id: int, key: str, name: str) -> float | None:
        """A final metric of a COMPLETE trial (None if the trial is not COMPLETE or lacks it)."""
        with self.session() as s:
            return s.scalar(select(FinalMetricRow.value).join(TrialRow, TrialRow.id == FinalMetricRow.trial_id)
                            .where(TrialRow.study_id == study_id, TrialRow.key == key,
                                   TrialRow.status == "COMPLETE", FinalMetricRow.name == name))

    def trials_frame(self, study: str) -> pd.DataFrame:
        """One row per trial: id, key, config_key, seed, status, error, failure_kind, times, host,
        attempts, batch_group, one column per search parameter (``param.<name>``) and per final metric."""
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
                       error=t.error, failure_kind=t.failure_kind, attempts=t.attempts,
                       optuna_number=t.optuna_number, batch_group=t.batch_group,
                       started_at=t.started_at, finished_at=t.finished_at, host=t.host,
                       **{k: _dotted(upgrade_stored_config(t.config), k) for k in CONFIG_COLUMNS})
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
