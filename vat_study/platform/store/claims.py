"""Drivers, their heartbeats and their claims: several ``vat-study run`` processes of one study share
its trials. ``Claims`` is the store's part that keeps them (``store.claims``); ``Driver`` is this
process as one of them.

A *driver* is one ``vat-study run`` process of a study. It registers a row in ``vat_drivers``
(host, pid, the machine and process namespace its pid belongs to) and a background thread
renews the row's ``heartbeat_at`` every ``executor.heartbeat_every`` seconds (default 5). Each
trial it runs is *claimed* first (``Claims.claim_trial``): one conditional ``INSERT ... ON
CONFLICT DO NOTHING`` (a trial nobody has recorded) or one conditional ``UPDATE ... WHERE
attempts = <seen> AND <claimable>`` (a FAILED trial, or a RUNNING one whose driver is dead):
whichever drivers race for a trial, on SQLite or on PostgreSQL, exactly one wins it. A RUNNING
trial belongs to its driver for as long as that driver is alive, which is:

* its row has not been marked finished, and
* its heartbeat is younger than ``executor.stale_after`` seconds (default 60), and
* where the driver ran on this machine (same host and process namespace), its process exists.

Only a trial whose driver is dead is ever failed or taken over by another driver (``reclaimed``:
a new attempt, so the dead driver's late writes are dropped by the lease; see "Fencing" in
``vat_study.platform.store``). A driver killed on this machine is known dead at once (its pid is
gone); a driver on another machine, or one that hangs, is dead once its heartbeat is
``stale_after`` old.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, delete, exists, or_, select, true, update
from sqlalchemy.orm import Session, aliased

from .database import Database, database_now, dialect_insert
from .faults import clean_text, retry_store_methods
from .schema import DriverRow, FinalMetricRow, Lease, MetricRow, TrialRow, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0
"""Seconds between two heartbeats of a driver (``executor.heartbeat_every``)."""
STALE_AFTER = 60.0
"""A driver whose heartbeat is older than this (seconds) is dead (``executor.stale_after``)."""

INTERRUPTED_BY_USER = "interrupted: stopped by the user (Ctrl-C) before this trial finished"

_this_process: set[str] = set()


def machine() -> str:
    """This host and its process namespace: where a pid names the same process as here."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return f"{socket.gethostname()}/{ns}"[:255]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_drivers() -> set[str]:
    """Tokens of the drivers started in this process (to mark their trials interrupted)."""
    return set(_this_process)


def package_versions() -> dict[str, Any]:
    """What a claimed trial records in ``versions``: its provenance (``vat_study.platform.provenance``)."""
    from ..provenance import trial_provenance

    return trial_provenance()


class Claims:
    """The store's drivers and the RUNNING trials they hold (``store.claims``): registration,
    heartbeats, who is dead, claiming a trial, failing the RUNNING trials of the dead."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ drivers

    def register_driver(self, study_id: int, token: str, host: str, machine: str, pid: int) -> None:
        with self.db.write(bookkeeping=True) as s:
            now = database_now(s)
            s.add(DriverRow(study_id=study_id, token=token, host=host[:255], machine=machine[:255], pid=pid,
                            started_at=now, heartbeat_at=now))

    def heartbeat(self, token: str) -> bool:
        """Renew the driver's heartbeat. False if another driver has taken its trials over."""
        with self.db.write(bookkeeping=True) as s:
            now = database_now(s)
            s.execute(update(DriverRow).where(DriverRow.token == token).values(heartbeat_at=now)
                      .execution_options(synchronize_session=False))
            return s.scalar(select(DriverRow.reaped_by).where(DriverRow.token == token)) is None

    def finish_driver(self, token: str) -> None:
        with self.db.write(bookkeeping=True) as s:
            now = database_now(s)
            s.execute(update(DriverRow).where(DriverRow.token == token).values(finished_at=now, heartbeat_at=now)
                      .execution_options(synchronize_session=False))

    def drivers_frame(self, study_id: int) -> pd.DataFrame:
        """The study's drivers: token, host, machine, pid, started_at, heartbeat_at, finished_at, reaped_by."""
        cols = ["token", "host", "machine", "pid", "started_at", "heartbeat_at", "finished_at", "reaped_by"]
        with self.db.session() as s:
            rows = s.execute(select(*(getattr(DriverRow, c) for c in cols)).where(DriverRow.study_id == study_id)
                             .order_by(DriverRow.id)).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=cols)

    @staticmethod
    def _pid_dead(s: Session, study_id: int) -> list[str]:
        """Tokens of the study's unfinished drivers on this machine whose process is gone."""
        rows = s.execute(select(DriverRow.token, DriverRow.pid).where(
            DriverRow.study_id == study_id, DriverRow.finished_at.is_(None), DriverRow.machine == machine())).all()
        return [t for t, pid in rows if pid != os.getpid() and not process_alive(pid)]

    def _live(self, s: Session, study_id: int, stale_after: float):
        """SQL: the trial's driver is alive (see the module's docstring)."""
        cutoff = database_now(s) - timedelta(seconds=float(stale_after))
        dead = self._pid_dead(s, study_id)
        d = aliased(DriverRow)
        return and_(TrialRow.driver.is_not(None), TrialRow.driver.not_in(dead) if dead else true(),
                    exists().where(d.token == TrialRow.driver, d.heartbeat_at >= cutoff, d.finished_at.is_(None)))

    def dead_drivers(self, study_id: int, stale_after: float) -> set[str]:
        """Tokens of the study's drivers that are dead (finished, stale heartbeat, or on this
        machine with their process gone)."""
        with self.db.session() as s:
            cutoff = database_now(s) - timedelta(seconds=float(stale_after))
            dead = set(self._pid_dead(s, study_id))
            dead |= set(s.scalars(select(DriverRow.token).where(
                DriverRow.study_id == study_id,
                or_(DriverRow.finished_at.is_not(None), DriverRow.heartbeat_at < cutoff))))
        return dead

    def reap_driver(self, token: str, by: str) -> bool:
        """Take a dead driver's work over (its Optuna trials): True for exactly one caller (and
        again for that caller: a retried call after a lost connection)."""
        with self.db.write() as s:
            r = s.execute(update(DriverRow).where(DriverRow.token == token,
                                                  or_(DriverRow.reaped_by.is_(None), DriverRow.reaped_by == by))
                          .values(reaped_by=by).execution_options(synchronize_session=False))
            return r.rowcount == 1

    # ------------------------------------------------------------------ RUNNING trials

    def fail_running(self, study_id: int, error: str, kind: str, keys: list[str] | None = None,
                     drivers: Collection[str] | None = None) -> int:
        """RUNNING trials of the study (or those of ``keys``; or those claimed by ``drivers``)
        become FAILED. Returns how many."""
        error = clean_text(error)
        with self.db.write() as s:
            q = select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.status == "RUNNING")
            if keys is not None:
                q = q.where(TrialRow.key.in_(keys))
            if drivers is not None:
                q = q.where(TrialRow.driver.in_(list(drivers)))
            rows = list(s.scalars(q.with_for_update()))
            for r in rows:
                r.status, r.error, r.failure_kind, r.finished_at = "FAILED", error, kind, utcnow()
            return len(rows)

    def fail_stale(self, study_id: int, stale_after: float) -> int:
        """RUNNING trials of the study whose driver is dead (or unknown: written before drivers
        were recorded) become FAILED (interrupted), each naming its driver. Returns how many."""
        with self.db.write() as s:
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
                    config: Mapping[str, Any], driver: str, seen: int, stale_after: float = STALE_AFTER,
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
        with self.db.write() as s:
            finished = s.execute(select(DriverRow.finished_at).where(DriverRow.token == driver).with_for_update()).first()
            if finished is not None and finished[0] is not None:
                return None
            common = dict(status="RUNNING", error=None, failure_kind=None, started_at=utcnow(), finished_at=None,
                          host=socket.gethostname(), versions=package_versions(), config=dict(config),
                          optuna_number=optuna_number, batch_group=batch_group, node=node, driver=driver)
            if seen == 0:
                stmt = dialect_insert(s)(TrialRow).values(study_id=study_id, key=key, config_key=config_key,
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


retry_store_methods(Claims)  # a lost connection is retried, as every store call is (store.faults)


class Driver:
    """This process as a driver of one study: its row in ``vat_drivers`` and its heartbeat thread.
    Use as a context manager; on leaving, the thread stops and the row is marked finished (an
    exception leaving the block first marks this driver's RUNNING trials FAILED, interrupted)."""

    def __init__(self, claims: Claims, study_id: int, heartbeat_every: float = HEARTBEAT_EVERY,
                 stale_after: float = STALE_AFTER) -> None:
        self.claims, self.study_id = claims, study_id
        self.heartbeat_every, self.stale_after = float(heartbeat_every), float(stale_after)
        self.token = uuid.uuid4().hex
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Driver:
        self.claims.register_driver(self.study_id, self.token, socket.gethostname(), machine(), os.getpid())
        _this_process.add(self.token)
        self._thread = threading.Thread(target=self._beat, name=f"vat-study-heartbeat-{self.token[:8]}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_every):
            try:
                if not self.claims.heartbeat(self.token):
                    log.warning("driver %s: another driver took this driver's trials over (its heartbeat was "
                                "older than %g s); their results from here on are dropped", self.token[:8],
                                self.stale_after)
                self.beats += 1
            except Exception as e:  # noqa: BLE001  a missed beat is retried; the trial goes on
                log.warning("driver heartbeat failed (%s); retrying in %g s", str(e).splitlines()[0][:200],
                            self.heartbeat_every)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_every + 60)
        try:
            self.claims.finish_driver(self.token)  # first: from now on no claim of this driver wins
        finally:
            if exc_type is not None:  # so these are all its RUNNING trials, even with Ray workers still claiming
                from ..signals import interrupted_text  # Ctrl-C, or the SIGTERM / SIGHUP named

                text = interrupted_text(exc, INTERRUPTED_BY_USER) if issubclass(exc_type, KeyboardInterrupt) else \
                    f"interrupted: the run stopped ({exc_type.__name__}) before this trial finished"
                self.claims.fail_running(self.study_id, text, "interrupted", drivers=[self.token])
