"""The SQL store: studies, trials, per-step metrics and final metrics (SQLAlchemy 2.0 typed ORM).

SQLite (WAL mode) by default; PostgreSQL (``postgresql+psycopg://...``) for shared use. Tables
are prefixed ``vat_`` so the Optuna study can live in the same database (optuna-dashboard opens
it). Every write goes through ``Store``; re-reporting a (trial, step, name) overwrites the value
instead of duplicating it. Engines are created lazily, so a ``Store`` pickles (Ray callbacks,
Ray workers) and each process opens its own connection pool.

The store sits below the trial vocabulary: it imports nothing of the science or the study files,
and keeps configs, parameters and specs as opaque JSON (as Optuna keeps parameters). Reading
them in today's vocabulary (stored-config upgrades, the trials frame's config columns) is
``vat_study.platform.results``' job. Its parts, one job each:

* ``database.Database``: the engine, read sessions, write transactions, a lock across processes;
* ``repository.Store`` (a ``Database``): studies and trials (reports, finishing, failing, pruning);
* ``claims``: ``store.claims`` (drivers, heartbeats, claiming trials, failing RUNNING ones) and
  ``Driver`` (this process as a driver, its heartbeat thread);
* ``frames``: a study's trials as stored, per-step metrics, provenance, where the pruner stopped;
* ``twin``: the records of the Optuna study beside the store, and where the two disagree;
* ``manage``: deleting and renaming a study (both its records); ``schema``, ``engine``
  (migrations), ``faults`` (retries, one-line errors), ``health``, ``urls``.

Reliability (what the tests in tests/test_reliability.py inject faults against):

* Schema versions. The schema is created and upgraded by Alembic migrations
  (``vat_study/platform/store/migrations``, version table ``vat_alembic_version``, apart from Optuna's own
  ``alembic_version``). The first use of a database in a process upgrades it to the newest
  revision under a lock (a PostgreSQL advisory lock; SQLite's write lock), so an older store is
  upgraded in place, data kept; a store written by a newer vat-study is refused (``StoreError``).
* Writes are short transactions. On SQLite every write transaction starts with
  ``BEGIN IMMEDIATE``: it takes the write lock up front and waits for it (busy timeout 60 s)
  instead of failing with "database is locked" when two writers race to upgrade a read lock.
* Fencing. ``store.claims.claim_trial`` returns a ``Lease`` (trial id, attempt number). Reports,
  finishing and failing go through the lease and are dropped if the trial was restarted since (a newer attempt)
  or is no longer RUNNING: a zombie worker of a killed run can never overwrite the rerun's trial.
  ``finish_trial`` writes the final metrics and COMPLETE in one transaction: a kill leaves either
  a finished trial or a RUNNING one (redone by the next run), never a half-finished one.
* Claims. Several drivers (``vat-study run`` processes) may run one study on one store at once.
  Each registers in ``vat_drivers`` and keeps a heartbeat from a background thread; each trial is
  claimed with one conditional INSERT / UPDATE that exactly one racing driver wins
  (``claims.claim_trial``), and a RUNNING trial is only failed or taken over once its driver is
  dead (heartbeat older than ``executor.stale_after``, or its process gone from this machine); see
  ``vat_study.platform.store.claims``. A takeover is a new attempt, so the lease fences the old one off.
"""

from .claims import Claims, package_versions
from .database import Database
from .engine import _alembic_config, make_engine, schema_revision, upgrade_schema  # noqa: F401
from .repository import Store
from .schema import (
    FAILURE_KINDS,
    failure_line,
    MIGRATIONS,
    NAMING,
    SCHEMA_REVISION,
    STATUSES,
    VERSION_TABLE,
    Base,
    DriverRow,
    FinalMetricRow,
    Lease,
    MetricRow,
    StoreError,
    StudyRow,
    TrialRow,
)
from .urls import mask_secrets, safe_url

__all__ = ["FAILURE_KINDS", "failure_line", "MIGRATIONS", "NAMING", "SCHEMA_REVISION", "STATUSES", "VERSION_TABLE",
           "Base", "Claims", "Database", "DriverRow", "FinalMetricRow", "Lease", "MetricRow", "Store",
           "StoreError", "StudyRow", "TrialRow", "make_engine", "mask_secrets", "package_versions", "safe_url",
           "schema_revision", "upgrade_schema"]
