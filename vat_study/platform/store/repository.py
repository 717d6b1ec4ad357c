"""``Store``: every read and write of the study database (fencing, short transactions)."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, delete, exists, or_, select, text, true, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, aliased

from ...surface import upgrade_stored_config
from ..failpoints import failpoint
from .engine import make_engine, upgrade_schema
from .faults import clean_text, retry_store_methods
from .schema import (
    Base,
    DriverRow,
    FinalMetricRow,
    Lease,
    MetricRow,
    StudyRow,
    TrialRow,
    utcnow,
)

log = logging.getLogger(__name__)


def package_versions() -> dict[str, Any]:
    """What a trial records in ``versions``: its provenance (``vat_study.platform.provenance``)."""
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


def _insert(s: Session):
    """The dialect's INSERT (with ON CONFLICT)."""
    if s.get_bind().dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert


def _pg_now():
    from sqlalchemy import func

    return func.now()


class Store:
    """All reads and writes of the study database. Cheap to pickle: the engine is made on first
    use, and the first use in a process brings the schema up to date."""

    def __init__(self, url: str, upgrade: bool = True) -> None:
        self.url = url
        self.upgrade = upgrade  # False: read the schema as it is (a dry run writes nothing)
        self._engine: Engine | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "upgrade": self.upgrade}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state.get("upgrade", True))  # type: ignore[misc]

    @property
    def engine(self) -> Engine:
        if self._engine is None or self._pid != os.getpid():
            engine = make_engine(self.url)
            try:
                if self.upgrade:
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
    def _write(self, bookkeeping: bool = False) -> Iterator[Session]:
        """One write transaction (BEGIN IMMEDIATE on SQLite), committed at the end of the block.
        ``bookkeeping``: a driver's registration and heartbeats, which do not pass the
        ``store.commit`` failpoint (heartbeats come at times of their own: the failpoint counts
        stay those of the study's writes, deterministic)."""
        with Session(self.engine.execution_options(vat_write=True), expire_on_commit=False) as s, s.begin():
            yield s
            if not bookkeeping:
                failpoint("store.commit")

    # ------------------------------------------------------------------ studies

    def get_or_create_study(self, name: str, spec: Mapping[str, Any], spec_path: str | None = None) -> int:
        stored = json.loads(json.dumps(spec, default=str))
        with self._write() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == name).with_for_update())
            if row is None:
                # several drivers may start one new study at once (PostgreSQL has no BEGIN IMMEDIATE):
                # one INSERT wins, the others' do nothing and they update the winner's row below
                now = utcnow()
                s.execute(_insert(s)(StudyRow).values(name=name, spec=stored, spec_path=spec_path, created_at=now,
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

    def trial_configs(self, study_id: int, status: str = "COMPLETE") -> dict[str, tuple[dict[str, Any], int, dict]]:
        """key -> (params, seed, resolved config) of the study's trials with ``status``; configs
        in today's vocabulary (``config.upgrade_stored_config``), whatever version stored them."""
        with self.session() as s:
            rows = s.execute(select(TrialRow.key, TrialRow.params, TrialRow.seed, TrialRow.config)
                             .where(TrialRow.study_id == study_id, TrialRow.status == status)).all()
        return {k: (p, seed, upgrade_stored_config(c)) for k, p, seed, c in rows}

    def fail_running(self, study_id: int, error: str, kind: str, keys: list[str] | None = None,
                     drivers: Collection[str] | None = None) -> int:
        """RUNNING trials of the study (or those of ``keys``; or those claimed by ``drivers``)
        become FAILED. Returns how many."""
        error = clean_text(error)
        with self._write() as s:
            q = select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.status == "RUNNING")
            if keys is not None:
                q = q.where(TrialRow.key.in_(keys))
            if drivers is not None:
                q = q.where(TrialRow.driver.in_(list(drivers)))
            rows = list(s.scalars(q.with_for_update()))
            for r in rows:
                r.status, r.error, r.failure_kind, r.finished_at = "FAILED", error, kind, utcnow()
            return len(rows)

    def fail_interrupted(self, study_id: int) -> int:
        """Trials left RUNNING by a killed run become FAILED (to be redone). Returns how many."""
        return self.fail_running(study_id, "interrupted: the run stopped before this trial finished", "interrupted")

    # ------------------------------------------------------------------ drivers and claims

    @staticmethod
    def _now(s: Session) -> datetime:
        """The database's clock on PostgreSQL (drivers on several hosts compare heartbeats on one
        clock); this machine's for a SQLite file (which lives on it)."""
        if s.get_bind().dialect.name == "postgresql":
            return s.scalar(select(_pg_now()))
        return utcnow()

    def register_driver(self, study_id: int, token: str, host: str, machine: str, pid: int) -> None:
        with self._write(bookkeeping=True) as s:
            now = self._now(s)
            s.add(DriverRow(study_id=study_id, token=token, host=host[:255], machine=machine[:255], pid=pid,
                            started_at=now, heartbeat_at=now))

    def heartbeat(self, token: str) -> bool:
        """Renew the driver's heartbeat. False if another driver has taken its trials over."""
        with self._write(bookkeeping=True) as s:
            now = self._now(s)
            s.execute(update(DriverRow).where(DriverRow.token == token).values(heartbeat_at=now)
                      .execution_options(synchronize_session=False))
            return s.scalar(select(DriverRow.reaped_by).where(DriverRow.token == token)) is None

    def finish_driver(self, token: str) -> None:
        with self._write(bookkeeping=True) as s:
            now = self._now(s)
            s.execute(update(DriverRow).where(DriverRow.token == token).values(finished_at=now, heartbeat_at=now)
                      .execution_options(synchronize_session=False))

    def drivers_frame(self, study_id: int) -> pd.DataFrame:
        """The study's drivers: token, host, machine, pid, started_at, heartbeat_at, finished_at, reaped_by."""
        cols = ["token", "host", "machine", "pid", "started_at", "heartbeat_at", "finished_at", "reaped_by"]
        with self.session() as s:
            rows = s.execute(select(*(getattr(DriverRow, c) for c in cols)).where(DriverRow.study_id == study_id)
                             .order_by(DriverRow.id)).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=cols)

    def _pid_dead(self, s: Session, study_id: int) -> list[str]:
        """Tokens of the study's unfinished drivers on this machine whose process is gone."""
        from .claims import machine, process_alive

        rows = s.execute(select(DriverRow.token, DriverRow.pid).where(
            DriverRow.study_id == study_id, DriverRow.finished_at.is_(None), DriverRow.machine == machine())).all()
        return [t for t, pid in rows if pid != os.getpid() and not process_alive(pid)]

    def _live(self, s: Session, study_id: int, stale_after: float):
        """SQL: the trial's driver is alive (see ``claims``)."""
        cutoff = self._now(s) - timedelta(seconds=float(stale_after))
        dead = self._pid_dead(s, study_id)
        d = aliased(DriverRow)
        return and_(TrialRow.driver.is_not(None), TrialRow.driver.not_in(dead) if dead else true(),
                    exists().where(d.token == TrialRow.driver, d.heartbeat_at >= cutoff, d.finished_at.is_(None)))

    def dead_drivers(self, study_id: int, stale_after: float) -> set[str]:
        """Tokens of the study's drivers that are dead (finished, stale heartbeat, or on this
        machine with their process gone)."""
        with self.session() as s:
            cutoff = self._now(s) - timedelta(seconds=float(stale_after))
            dead = set(self._pid_dead(s, study_id))
            dead |= set(s.scalars(select(DriverRow.token).where(
                DriverRow.study_id == study_id,
                or_(DriverRow.finished_at.is_not(None), DriverRow.heartbeat_at < cutoff))))
        return dead

    def reap_driver(self, token: str, by: str) -> bool:
        """Take a dead driver's work over (its Optuna trials): True for exactly one caller (and
        again for that caller: a retried call after a lost connection)."""
        with self._write() as s:
            r = s.execute(update(DriverRow).where(DriverRow.token == token,
                                                  or_(DriverRow.reaped_by.is_(None), DriverRow.reaped_by == by))
                          .values(reaped_by=by).execution_options(synchronize_session=False))
            return r.rowcount == 1

    def trial_states(self, study_id: int) -> dict[str, tuple[str, int, str | None]]:
        """key -> (status, attempts, driver token) for every trial the study has recorded."""
        with self.session() as s:
            return {k: (st, a, d) for k, st, a, d in s.execute(
                select(TrialRow.key, TrialRow.status, TrialRow.attempts, TrialRow.driver)
                .where(TrialRow.study_id == study_id)).all()}

    def fail_stale(self, study_id: int, stale_after: float) -> int:
        """RUNNING trials of the study whose driver is dead (or unknown: written before drivers
        were recorded) become FAILED (interrupted), each naming its driver. Returns how many."""
        with self._write() as s:
            rows = s.execute(select(TrialRow.id, TrialRow.attempts, DriverRow.host, DriverRow.pid,
                                    DriverRow.heartbeat_at)
                             .outerjoin(DriverRow, DriverRow.token == TrialRow.driver)
                             .where(TrialRow.study_id == study_id, TrialRow.status == "RUNNING",
                                    ~self._live(s, study_id, stale_after))).all()
            now = utcnow()
            n = 0
            for tid, attempts, host, pid, beat in rows:
                who = f" (its driver, pid {pid} on {host}, last heartbeat {beat:%Y-%m-%d %H:%M:%S} UTC, stopped)" \
                    if host is not None else ""
                n += s.execute(update(TrialRow).where(TrialRow.id == tid, TrialRow.attempts == attempts,
                                                      TrialRow.status == "RUNNING")
                               .values(status="FAILED", failure_kind="interrupted", finished_at=now,
                                       error=f"interrupted: the run stopped before this trial finished{who}")
                               .execution_options(synchronize_session=False)).rowcount
            return n

    def claim_trial(self, study_id: int, *, key: str, config_key: str, params: Mapping[str, Any], seed: int,
                    config: Mapping[str, Any], driver: str, seen: int, stale_after: float = 60.0,
                    optuna_number: int | None = None, batch_group: str | None = None,
                    node: str | None = None) -> Lease | None:
        """Claim a trial for ``driver``: a Lease for exactly one of any number of racing drivers,
        None for the others. ``seen``: the attempts the caller saw (0: no row). The claim wins
        when the trial is still as seen and is new, FAILED, or RUNNING under a dead driver (a
        conditional INSERT / UPDATE: atomic on SQLite and PostgreSQL). A won claim of a recorded
        trial is a new attempt: its old metrics are dropped, the old lease is fenced off. A driver
        that has finished (``finish_driver``: its run ended, e.g. on Ctrl-C, while a Ray worker of
        it still claims) wins no claim: its row is locked here, so ``finish_driver`` and a claim are
        serialized and the driver's RUNNING trials, marked after it finished, are all of them."""
        with self._write() as s:
            finished = s.execute(select(DriverRow.finished_at).where(DriverRow.token == driver).with_for_update()).first()
            if finished is not None and finished[0] is not None:
                return None
            common = dict(status="RUNNING", error=None, failure_kind=None, started_at=utcnow(), finished_at=None,
                          host=socket.gethostname(), versions=package_versions(), config=dict(config),
                          optuna_number=optuna_number, batch_group=batch_group, node=node, driver=driver)
            if seen == 0:
                stmt = _insert(s)(TrialRow).values(study_id=study_id, key=key, config_key=config_key,
                                                    params=dict(params), seed=seed, attempts=1, **common)
                tid = s.scalar(stmt.on_conflict_do_nothing(index_elements=["study_id", "key"])
                               .returning(TrialRow.id))
                if tid is not None:
                    return Lease(tid, 1)
            tid = s.scalar(select(TrialRow.id).where(TrialRow.study_id == study_id, TrialRow.key == key))
            if tid is None:
                return None
            claimable = or_(
                and_(TrialRow.attempts == seen,
                     or_(TrialRow.status == "FAILED",
                         and_(TrialRow.status == "RUNNING", ~self._live(s, study_id, stale_after)))),
                # this driver's own RUNNING trial: its worker died and Ray Tune retries the trial
                and_(TrialRow.status == "RUNNING", TrialRow.driver == driver))
            attempt = s.scalar(update(TrialRow).where(TrialRow.id == tid, claimable)
                               .values(attempts=TrialRow.attempts + 1, **common)
                               .returning(TrialRow.attempts).execution_options(synchronize_session=False))
            if attempt is None:
                return None
            s.execute(delete(MetricRow).where(MetricRow.trial_id == tid))
            s.execute(delete(FinalMetricRow).where(FinalMetricRow.trial_id == tid))
            return Lease(tid, attempt)

    def set_batch_group(self, leases: list[Lease], group: str) -> None:
        """The batch group of trials claimed one by one and trained as one batched model."""
        with self._write() as s:
            for lease in leases:
                row = self._holds(s, lease)
                if row is not None:
                    row.batch_group = group

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
            (log.info if getattr(row, "status", None) == "PRUNED" else log.warning)("dropped a write for trial %s attempt %s: the trial has moved on (attempt %s, %s)",
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
        stmt = _insert(s)(model).values(rows)
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

    # ------------------------------------------------------------------ Optuna records

    def trial_records(self, study_id: int, keys: list[str], metric: str,
                      config_keys: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        """key -> {trial_id, status, seed, config_key, batch_group, versions (its provenance record),
        final: {name: value}, curve: {step: value of ``metric``}} for the study's trials of ``keys``
        and of ``config_keys`` (every seed recorded of those configurations)."""
        with self.session() as s:
            rows = s.execute(select(TrialRow.id, TrialRow.key, TrialRow.status, TrialRow.seed, TrialRow.config_key,
                                    TrialRow.batch_group, TrialRow.versions)
                             .where(TrialRow.study_id == study_id,
                                    or_(TrialRow.key.in_(list(keys)), TrialRow.config_key.in_(list(config_keys))))).all()
            ids = {r.id: r.key for r in rows}
            finals = s.execute(select(FinalMetricRow.trial_id, FinalMetricRow.name, FinalMetricRow.value)
                               .where(FinalMetricRow.trial_id.in_(list(ids)))).all() if ids else []
            steps = s.execute(select(MetricRow.trial_id, MetricRow.step, MetricRow.value)
                              .where(MetricRow.trial_id.in_(list(ids)), MetricRow.name == metric)).all() if ids else []
        out = {r.key: {"trial_id": r.id, "status": r.status, "seed": r.seed, "config_key": r.config_key,
                       "batch_group": r.batch_group, "versions": dict(r.versions or {}), "final": {}, "curve": {}}
               for r in rows}
        for tid, name, value in finals:
            out[ids[tid]]["final"][name] = value
        for tid, step, value in steps:
            out[ids[tid]]["curve"][int(step)] = value
        return out

    def prune_trials(self, study_id: int, trials: list[Mapping[str, Any]]) -> int:
        """The trials (dicts of key, config_key, params, seed, config) become PRUNED: RUNNING ones
        at once (their driver's next write is refused, and its training stops), those not yet
        recorded as PRUNED rows, so no driver trains them. Returns how many changed."""
        n = 0
        with self._write() as s:
            now = utcnow()
            for t in trials:
                n += s.execute(update(TrialRow).where(TrialRow.study_id == study_id, TrialRow.key == t["key"],
                                                      TrialRow.status.in_(("RUNNING", "FAILED")))
                               .values(status="PRUNED", finished_at=now, error=None, failure_kind=None)
                               .execution_options(synchronize_session=False)).rowcount
                stmt = _insert(s)(TrialRow).values(
                    study_id=study_id, key=t["key"], config_key=t["config_key"], params=dict(t["params"]),
                    seed=t["seed"], config=dict(t["config"]), status="PRUNED", attempts=0, started_at=now,
                    finished_at=now, host=socket.gethostname(), versions={})
                n += s.execute(stmt.on_conflict_do_nothing(index_elements=["study_id", "key"])).rowcount
        return n

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """One holder at a time, across processes, of the lock ``name`` of this database: a
        PostgreSQL advisory lock; for a SQLite file, flock on the file (SQLite's own locks are
        fcntl locks, which flock does not touch)."""
        import zlib

        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                key = zlib.crc32(name.encode()) & 0x7FFFFFFF
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        import fcntl

        path = self.engine.url.database
        if not path or path == ":memory:":
            yield
            return
        # the store's folder, not the file: closing any descriptor of the database file would
        # drop SQLite's own (POSIX) locks on it held by this process
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

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
        return {k: x for k, x in (v or {}).items() if k != "trackers"}

    def note_trackers(self, lease: Lease, problems: Mapping[str, str]) -> None:
        """What the trial's trackers did not record (tracker -> one line), kept with the trial in
        ``versions["trackers"]`` (``tracking``); only for the attempt ``lease`` holds, finished or not."""
        with self._write() as s:
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

    def trials_frame(self, study: str) -> pd.DataFrame:
        """One row per trial (``frames.trials_frame``)."""
        from .frames import trials_frame

        return trials_frame(self, study)

    def metrics_frame(self, study: str) -> pd.DataFrame:
        """Per-step metrics, long format (``frames.metrics_frame``)."""
        from .frames import metrics_frame

        return metrics_frame(self, study)


retry_store_methods(Store)  # a lost connection (PostgreSQL restarted, a network blip) is retried: store.faults
