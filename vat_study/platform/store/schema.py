"""The store's tables (SQLAlchemy 2.0 typed ORM, constraint naming convention), its schema
revision and the trial lease."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STATUSES = ("RUNNING", "COMPLETE", "FAILED", "PRUNED")
FAILURE_KINDS = ("error", "diverged", "timeout", "interrupted", "worker_died")
"""Why a trial is FAILED: it raised; its loss became NaN/inf; it ran past executor.trial_timeout;
the run stopped (Ctrl-C, kill) before it finished; its Ray worker process died."""


def failure_line(kind: str | None, error: str | None, limit: int = 300) -> str:
    """``kind: last line of the error`` (at most ``limit`` characters), as ``vat-study run`` and the
    report name a trial that did not complete; a text that already starts with its kind
    ("interrupted: stopped by the user ...") is not prefixed twice."""
    kind = kind or "error"
    last = ((error or "").strip().splitlines() or [""])[-1][:limit]
    return last if last.startswith(f"{kind}:") else f"{kind}: {last}"


SCHEMA_REVISION = "0004"
"""The newest migration (vat_study/platform/store/migrations/versions); a fresh store is created at it."""
VERSION_TABLE = "vat_alembic_version"
MIGRATIONS = Path(__file__).parent / "migrations"

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
    node: Mapped[str | None] = mapped_column(String(64))  # the Ray node that ran it (0003); None: in-process
    driver: Mapped[str | None] = mapped_column(String(64), index=True)  # DriverRow.token of its claim (0004)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    study: Mapped[StudyRow] = relationship(back_populates="trials")


class DriverRow(Base):
    """One ``vat-study run`` process (a driver) of a study, and its heartbeat (schema 0004). A
    RUNNING trial belongs to the driver whose ``token`` it holds in ``TrialRow.driver``; while that
    driver's heartbeat is fresh, no other driver touches the trial (see ``claims``)."""

    __tablename__ = "vat_drivers"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("vat_studies.id", ondelete="CASCADE"), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    machine: Mapped[str] = mapped_column(String(255))  # host and process namespace: where ``pid`` means this process
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reaped_by: Mapped[str | None] = mapped_column(String(64))  # the driver that took its trials over


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
